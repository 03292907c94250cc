"""Ensembles of checkpoints: finding them (file, list, run and sweep folders), agreement checks, averaging."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from checkpoint_fixtures import SR, build_checkpoint, speechlike

from ser.inference.ensemble import EnsemblePredictor, load_predictor
from ser.inference.predictor import Predictor
from ser.models.checkpoint import CheckpointError, rebuild
from ser.models.ensemble import (
    BEST,
    average,
    check_members,
    held_out_members,
    load_members,
    resolve_checkpoints,
    seen_speakers,
)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("members")
    return [build_checkpoint(d / "a.ckpt", seed=0), build_checkpoint(d / "b.ckpt", loss="binary", seed=1)]


def _sweep(root: Path, ckpt: Path, jobs: list[str]) -> Path:
    for job in jobs:
        (root / job / "checkpoints").mkdir(parents=True)
        shutil.copy(ckpt, root / job / "checkpoints" / "best.ckpt")
    return root


def test_a_sweep_folder_gives_every_jobs_best_checkpoint_in_job_order(ckpts, tmp_path):
    sweep = _sweep(tmp_path / "sweep", ckpts[0], ["0", "10", "2"])
    (tmp_path / "sweep" / "3").mkdir()  # a failed job without a checkpoint
    found = resolve_checkpoints(str(sweep))
    assert [p.parent.parent.name for p in found] == ["0", "2", "10"]
    # A run folder is its own best checkpoint; a list mixes files and folders.
    assert resolve_checkpoints(sweep / "2") == [sweep / "2" / "checkpoints" / "best.ckpt"]
    assert resolve_checkpoints([str(ckpts[1]), str(sweep / "0")]) == [
        ckpts[1],
        sweep / "0" / "checkpoints" / "best.ckpt",
    ]


def test_a_folder_of_links_to_job_folders_is_a_sweep_folder(ckpts, tmp_path):
    """An ensemble assembled from the jobs of two sweeps as links; a link back up the tree does not loop."""
    first, second = _sweep(tmp_path / "logmel", ckpts[0], ["0"]), _sweep(tmp_path / "egemaps", ckpts[1], ["0"])
    links = tmp_path / "pair"
    links.mkdir()
    (links / "0").symlink_to(first / "0", target_is_directory=True)
    (links / "1").symlink_to(second / "0", target_is_directory=True)
    (links / "1" / "loop").symlink_to(links, target_is_directory=True)
    assert resolve_checkpoints(links) == [links / "0" / BEST, links / "1" / BEST]


def test_missing_and_empty_inputs_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    cases = {
        str(tmp_path / "nope.ckpt"): "nope.ckpt: checkpoint not found",
        str(tmp_path / "empty"): "no checkpoints/best.ckpt in this folder",
        None: "no checkpoint given",
    }
    for spec, text in cases.items():
        with pytest.raises(CheckpointError) as err:
            resolve_checkpoints(spec)
        assert text in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="empty"):
        resolve_checkpoints([])


def test_members_must_share_the_classes(ckpts):
    a, b = load_members([str(p) for p in ckpts])
    with pytest.raises(CheckpointError, match="must share the classes"):
        check_members([a, dataclasses.replace(b, classes=tuple(reversed(b.classes)))])
    with pytest.raises(CheckpointError, match="share the rate"):
        check_members([a, dataclasses.replace(b, sample_rate=22050)], same_sample_rate=True)


def test_ensemble_probabilities_are_the_mean_of_the_members(ckpts):
    waves = [speechlike(1.0, SR, seed=s) for s in range(3)] + [speechlike(2.3, SR, seed=9)]
    singles = [Predictor.from_checkpoint(p).predict_waves(waves) for p in ckpts]
    ensemble = load_predictor([str(p) for p in ckpts])
    assert isinstance(ensemble, EnsemblePredictor) and len(ensemble.members) == 2
    np.testing.assert_allclose(ensemble.predict_waves(waves), (singles[0] + singles[1]) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(average(singles), (singles[0] + singles[1]) / 2, rtol=1e-6)
    # Files and timelines go through the same forward pass.
    timeline = ensemble.timeline(waves[3], window=1.0, hop=0.5)
    assert timeline and all(p.probabilities is not None for p in timeline)


def test_one_checkpoint_stays_a_plain_predictor(ckpts):
    single = load_predictor(str(ckpts[0]))
    assert type(single) is Predictor
    wave = [speechlike(1.0, SR, seed=4)]
    np.testing.assert_array_equal(single.predict_waves(wave), Predictor.from_checkpoint(ckpts[0]).predict_waves(wave))


def test_held_out_members_follow_the_data_records(ckpts):
    a, b = (rebuild(p) for p in ckpts)
    assert seen_speakers(a) is None  # written without a record: overlap cannot be ruled out
    a = dataclasses.replace(a, data={"speakers": {"train": ["x/1"], "val": ["x/2"], "test": ["x/3"]}})
    b = dataclasses.replace(b, data={"speakers": {"train": ["x/3"], "val": ["x/2"], "test": ["x/1"]}})
    assert held_out_members([a, b], ["x/1", "x/2", "x/3", "y/9"]) == {
        "x/1": [1],
        "x/2": [],
        "x/3": [0],
        "y/9": [0, 1],
    }


def test_predict_command_averages_a_list_of_checkpoints(ckpts, tmp_path):
    import io
    import json
    import os

    import soundfile as sf
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ser.predict import CONFIG_DIR, PredictOptions, options_from_config, run

    wav = tmp_path / "clip.wav"
    sf.write(wav, speechlike(1.5, SR, seed=7), SR)

    def predict(ckpt) -> dict:
        out = io.StringIO()
        assert run(PredictOptions(ckpt=ckpt, inputs=[str(wav)], format="json"), stdout=out) == 0
        return json.loads(out.getvalue())

    singles = [predict(str(p)) for p in ckpts]
    both = predict([str(p) for p in ckpts])
    assert "checkpoints" not in singles[0]["header"]
    assert both["header"]["checkpoints"] == [os.path.abspath(p) for p in ckpts]
    mean = {
        c: (singles[0]["predictions"][0]["probabilities"][c] + singles[1]["predictions"][0]["probabilities"][c]) / 2
        for c in both["header"]["classes"]
    }
    assert both["predictions"][0]["probabilities"] == pytest.approx(mean, abs=1e-5)
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(config_name="predict", overrides=[f"ckpt=[{ckpts[0]},{ckpts[1]}]", f"inputs=[{wav}]"])
    GlobalHydra.instance().clear()
    assert options_from_config(cfg).ckpt == [str(p) for p in ckpts]
