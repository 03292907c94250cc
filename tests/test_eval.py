"""ser.eval on the demo corpus: reproduction of a run's test metrics, overlap refusal, partial data, ensembles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ser.data.corpora.demo import ensure_demo_corpus
from ser.eval import EvalError, evaluate, run
from ser.metrics import SCALARS
from ser.models.checkpoint import rebuild
from ser.train import run as train
from tests.conftest import FAST_OVERRIDES, compose_config

ROOT = Path(__file__).resolve().parents[1]
BEST = Path("checkpoints") / "best.ckpt"
QUIET = ["logger=none", "trainer.max_epochs=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_cache) -> dict[str, Path]:
    """A speaker-split run and a 2-fold sweep (job folders 0/ and 1/), tiny models."""
    out = tmp_path_factory.mktemp("eval-runs")
    train(compose_config("train", [*FAST_OVERRIDES, "seed=0"], out / "single", shared_cache))
    for fold in (0, 1):
        overrides = [*FAST_OVERRIDES, *QUIET, "split=kfold", "split.num_folds=2", f"split.fold={fold}"]
        train(compose_config("train", overrides, out / "sweep" / str(fold), shared_cache))
    GlobalHydra.instance().clear()
    return {"single": out / "single", "sweep": out / "sweep"}


@pytest.fixture
def eval_config(tmp_path, shared_cache):
    def make(*overrides: str, data: str = "demo"):
        return compose_config("eval", [f"data={data}", "data.progress=false", *overrides], tmp_path, shared_cache)

    yield make
    GlobalHydra.instance().clear()


def _record(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_checkpoint_records_the_speakers_of_its_split(runs):
    data = rebuild(runs["single"] / BEST).data
    manifest = json.loads((runs["single"] / "split_manifest.json").read_text())
    assert data["corpora"] == ["demo"] and data["split"] == "speaker" and data["seed"] == 0
    for part in ("train", "val", "test"):
        assert data["speakers"][part] == manifest[part]["speakers"]


def test_own_test_speakers_reproduce_the_training_runs_test_metrics(runs, eval_config, tmp_path):
    trained = _record(runs["single"])
    record = run(eval_config(f"ckpt={runs['single'] / BEST}"))
    for key in (*SCALARS, "confusion", "per_class_recall"):
        assert record[key] == trained[key], key
    ev = record["eval"]
    assert ev["protocol"] == "single" and ev["speakers_from"].startswith("the test speakers")
    assert ev["speakers"] == rebuild(runs["single"] / BEST).data["speakers"]["test"]
    assert ev["skipped"] == {} and ev["overlap"]["speakers"] == []
    assert record["data"]["clips"]["test"] == trained["data"]["clips"]["test"]
    for name in ("metrics.json", "confusion_matrix.png", "eval_report.md", "predictions.csv"):
        assert (tmp_path / name).is_file(), name
    for name in ("per_speaker", "per_corpus"):
        assert (tmp_path / f"{name}.csv").is_file() and (tmp_path / f"{name}.md").is_file()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert acc.Scalars("eval/uar")[-1].value == pytest.approx(record["uar"])


def test_overlap_is_refused_unless_allowed_and_then_flagged(runs, eval_config, tmp_path):
    ckpt = runs["single"] / BEST
    seen = rebuild(ckpt).data["speakers"]["train"][0]
    with pytest.raises(EvalError, match="trained or validated on") as err:
        run(eval_config(f"ckpt={ckpt}", f"speakers=[{seen}]"))
    assert "allow_overlap=true" in str(err.value) and "\n" not in str(err.value)
    short = seen.split("/", 1)[1]  # the speaker without its corpus is understood too
    record = run(eval_config(f"ckpt={ckpt}", f"speakers=[{short}]", "allow_overlap=true"))
    assert record["eval"]["overlap"]["speakers"] == [seen] and record["eval"]["overlap"]["allowed"]
    assert record["eval"]["overlap"]["clips"] == record["data"]["clips"]["test"] > 0
    assert record["data"]["speaker_independent"] is False
    assert "WARNING" in (tmp_path / "eval_report.md").read_text()


def test_a_corpus_without_female_speakers_skips_gender_metrics(runs, eval_config, shared_cache):
    savee = ensure_demo_corpus(shared_cache / "demo", progress=False) / "savee"
    record = run(eval_config(f"ckpt={runs['single'] / BEST}", f"data.roots.savee={savee}", data="savee"))
    ev = record["eval"]
    # Its own corpus under another corpus set: only the SAVEE speaker it was tested on is unseen.
    assert ev["speakers"] == [s for s in rebuild(runs["single"] / BEST).data["speakers"]["test"] if "savee" in s]
    assert record["gender_accuracy"] is None and "only male" in ev["skipped"]["gender_accuracy"]
    assert "6 of 12 classes" in ev["scope"]["uar"]
    assert all(record["per_class_recall"][c] is None for c in record["per_class_recall"] if c.startswith("female"))
    assert record["emotion_accuracy"] is not None and record["emotion_uar"] is not None
    # Surprise clips are outside the labels: counted as exclusions, never as errors.
    assert ev["excluded"]["by_reason"]["no class: surprise (su) is not in the 12 labels"] == 8
    assert sum(map(sum, record["confusion"])) == record["data"]["clips"]["test"]


def test_a_manifest_with_unknown_genders_is_scored_on_what_is_known(runs, eval_config, shared_cache, tmp_path):
    savee = ensure_demo_corpus(shared_cache / "demo", progress=False) / "savee" / "AudioData"
    codes = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprise"}
    rows = ["path,speaker,emotion,gender"]
    for speaker, gender in (("DC", ""), ("JE", "m")):
        for wav in sorted((savee / speaker).glob("*.wav")):
            rows.append(f"{wav},guest_{speaker},{codes[wav.stem.rstrip('0123456789')]},{gender}")
    csv = tmp_path / "mine" / "manifest.csv"
    csv.parent.mkdir()
    csv.write_text("\n".join(rows) + "\n")
    record = run(eval_config(f"ckpt={runs['single'] / BEST}", f"data.roots.manifest={csv}", data="manifest"))
    ev = record["eval"]
    assert ev["speakers"] == ["manifest/guest_DC", "manifest/guest_JE"]
    # 12-class metrics over the clips whose gender is known; emotions over all; one gender: no gender accuracy.
    assert "clips whose speaker gender is known" in ev["scope"]["accuracy"]
    assert sum(map(sum, record["confusion"])) == record["data"]["clips"]["test"] // 2
    assert "only male" in ev["skipped"]["gender_accuracy"] and record["emotion_accuracy"] is not None
    assert sum(n for reason, n in ev["excluded"]["by_reason"].items() if "surprise" in reason) == 4


def test_a_kfold_sweep_folder_gives_cross_validation_predictions(runs, eval_config):
    record = run(eval_config(f"ckpt={runs['sweep']}"))
    ev = record["eval"]
    assert ev["protocol"] == "cross_validation" and len(ev["checkpoints"]) == 2
    assert record["environment"]["device"].startswith("cpu")  # eval's default device, recorded
    tested = [set(rebuild(runs["sweep"] / str(k) / BEST).data["speakers"]["test"]) for k in (0, 1)]
    assert set(ev["speakers"]) == tested[0] | tested[1]
    # Restricted to fold 0's test speakers, the sweep scores them with fold 0 only: fold 0's test metrics.
    fold0 = run(eval_config(f"ckpt={runs['sweep']}", f"speakers=[{','.join(sorted(tested[0]))}]"))
    assert fold0["uar"] == _record(runs["sweep"] / "0")["uar"]
    assert fold0["confusion"] == _record(runs["sweep"] / "0")["confusion"]


def test_an_ensemble_scores_the_mean_of_its_members_probabilities(runs, eval_config):
    a, b = (str(runs["sweep"] / str(k) / BEST) for k in (0, 1))
    speakers = "speakers=[crema_d/1001,savee/DC]"
    both = evaluate(eval_config(f"ckpt=[{a},{b}]", speakers, "allow_overlap=true"))
    singles = [evaluate(eval_config(f"ckpt={p}", speakers, "allow_overlap=true"))["probs"] for p in (a, b)]
    assert both["record"]["eval"]["protocol"] == "ensemble" and set(both["members"]) == {2}
    np.testing.assert_allclose(both["probs"], (singles[0] + singles[1]) / 2, rtol=1e-5, atol=1e-7)


def test_refused_when_every_speaker_was_seen(runs, eval_config):
    ckpt = runs["single"] / BEST
    train_speakers = rebuild(ckpt).data["speakers"]["train"]
    with pytest.raises(EvalError, match="trained or validated on"):
        run(eval_config(f"ckpt={ckpt}", f"speakers=[{','.join(train_speakers)}]"))


def test_cli_writes_outputs_eval_and_exits_2_with_one_line_errors(runs, cli_env, shared_cache, tmp_path):
    def cli(*args: str, cache: Path = shared_cache) -> subprocess.CompletedProcess:
        base = ["data=demo", f"paths.cache_dir={cache}"]  # progress=auto: output not a terminal, no bars
        return subprocess.run(
            [sys.executable, "-m", "ser.eval", *base, *args],
            cwd=tmp_path,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    ok = cli(f"ckpt={runs['single'] / BEST}", cache=tmp_path / "cold")  # features built here: a bar if any
    assert ok.returncode == 0, ok.stderr[-2000:]
    (out,) = (tmp_path / "outputs").glob("**/eval/*")  # outputs/[demo/]eval/<time>/
    assert _record(out)["uar"] == _record(runs["single"])["uar"]
    assert "UAR" in ok.stdout and str(out) in ok.stdout
    assert "\r" not in ok.stderr and "clip/s" not in ok.stderr  # one line per step in a redirected log
    res = cli(f"ckpt={tmp_path / 'nope.ckpt'}")  # an empty folder takes the same path (test_ensemble.py)
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("ser.eval: ") and "nope.ckpt: checkpoint not found" in last
    assert res.stderr.count("checkpoint not found") == 1  # said once, not also as a log line
    assert [p.name for p in (tmp_path / "outputs").glob("**/eval/*")] == [out.name]  # no folder left of it


@pytest.mark.parametrize("size", ["0", "-4", "two"])
def test_a_batch_size_that_cannot_work_is_named(runs, eval_config, size):
    with pytest.raises(EvalError, match=rf"^batch_size='?{size}'?: must be a positive integer"):
        run(eval_config(f"ckpt={runs['single'] / BEST}", f"batch_size={size}"))


def test_a_demo_checkpoint_scored_without_data_demo_says_to_add_it(runs, eval_config, tmp_path):
    from ser.data.corpus import DataError

    cfg = eval_config(f"ckpt={runs['single'] / BEST}", f"data.root={tmp_path / 'no_corpora'}", data="default")
    with pytest.raises(DataError, match="trained on the built-in demo corpus: add data=demo to score them on it$"):
        run(cfg)


def test_a_checkpoint_without_a_data_record_needs_allow_overlap(eval_config, tmp_path):
    from checkpoint_fixtures import build_checkpoint

    ckpt = build_checkpoint(tmp_path / "old.ckpt")  # as written before checkpoints recorded their speakers
    with pytest.raises(EvalError, match="does not record the speakers"):
        run(eval_config(f"ckpt={ckpt}", "speakers=[savee/DC]"))
    record = run(eval_config(f"ckpt={ckpt}", "speakers=[savee/DC]", "allow_overlap=true"))
    assert record["eval"]["overlap"]["speakers"] == ["savee/DC"]
    assert record["eval"]["overlap"]["clips"] == record["data"]["clips"]["test"]


def test_resumed_training_keeps_the_speakers_the_earlier_run_saw():
    from ser.models.checkpoint import DATA_KEY
    from ser.models.module import SERModule

    def record(train, val, test):
        return {"split": "speaker", "speakers": {"train": train, "val": val, "test": test}}

    module = SERModule(
        model={"_target_": "ser.models.lstm.LSTMClassifier", "hidden_size": 4, "dense_size": 4},
        loss={"_target_": "ser.models.losses.CategoricalLoss"},
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
        input_dim=8,
        data_record=record(["a"], ["b"], ["c"]),
    )
    module.on_load_checkpoint({DATA_KEY: record(["c"], ["d"], ["a"])})
    assert module.data_record["speakers"] == {"train": ["a", "c"], "val": ["b", "d"], "test": []}
    saved: dict = {}
    module.on_save_checkpoint(saved)
    assert saved[DATA_KEY] == module.data_record


def test_a_typo_on_the_command_line_is_one_line() -> None:
    """An unknown key or option of ser.eval: one line naming it and the nearest that exists, exit code 2."""
    res = subprocess.run(
        [sys.executable, "-m", "ser.eval", "ckpt=x.ckpt", "dat=demo"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "ser.eval: no config key `dat` (did you mean `data`?); to add a new key on purpose use +dat=demo"
    )


def test_a_bf16_trained_checkpoint_is_float32_and_scores_as_its_run(eval_config, shared_cache, tmp_path):
    """trainer.precision=bf16-mixed is for the training steps: weights stay float32, and the run's own test
    (float32) is what ser.eval gives on the same speakers."""
    out = tmp_path / "bf16"
    train(compose_config("train", [*FAST_OVERRIDES, *QUIET, "trainer.precision=bf16-mixed"], out, shared_cache))
    GlobalHydra.instance().clear()
    state = torch.load(out / BEST, map_location="cpu", weights_only=False)["state_dict"]
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float32}
    trained = _record(out)
    record = run(eval_config(f"ckpt={out / BEST}"))
    for key in (*SCALARS, "confusion"):
        assert record[key] == trained[key], key
