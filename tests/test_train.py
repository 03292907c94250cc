"""End-to-end training on the demo corpus: artifacts, metrics, seeds, TensorBoard, bad input."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ser.labels import CLASSES
from ser.metrics import SCALARS
from ser.models.module import NonFiniteLossError, SERModule
from ser.train import build_module, run

ROOT = Path(__file__).resolve().parents[1]


def _event_file(out: Path) -> EventAccumulator:
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_cache):
    """One real run (categorical loss) shared by the artifact tests of this module."""
    from tests.conftest import FAST_OVERRIDES, compose_config

    out = tmp_path_factory.mktemp("run")
    overrides = [
        "model.hidden_size=128",
        "model.dense_size=64",
        "optimizer.lr=0.003",
        "trainer.max_epochs=12",
        "seed=0",
    ]
    cfg = compose_config("train", [*FAST_OVERRIDES, *overrides], out, shared_cache)
    metrics = run(cfg)
    return out, metrics


def test_run_writes_every_artifact(trained):
    out, _ = trained
    for name in (
        "metrics.json",
        "confusion_matrix.png",
        "classification_report.txt",
        "split_manifest.json",
        "data_report.json",
        "data_report.txt",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    for key in SCALARS:
        assert 0.0 <= saved[key] <= 1.0, key
    assert set(saved["per_class_recall"]) == set(CLASSES)
    assert saved["loss"] == "categorical" and saved["seed"] == 0 and saved["split"] == "speaker"
    assert saved["data"]["speaker_independent"] is True
    assert saved["best_val"]["uar"] is not None
    assert sum(map(sum, saved["confusion"])) == saved["data"]["clips"]["test"]
    env = saved["environment"]  # where it ran, for reports that pool machines
    assert env["device"].startswith("cpu") and env["torch"] == torch.__version__ and env["threads"] >= 1
    report = (out / "classification_report.txt").read_text()
    assert all(name in report for name in CLASSES)


def test_model_learns_the_demo_corpus(trained):
    _, metrics = trained
    # Chance is 1/12 = 0.083; the demo classes differ in pitch, energy, tempo and tilt.
    assert metrics["uar"] > 0.3
    assert metrics["gender_accuracy"] > 0.8


def test_binary_accuracy_is_reported_next_to_the_trivial_baseline(trained):
    _, metrics = trained
    assert metrics["trivial_binary_accuracy"] == pytest.approx(11 / 12)
    # Per-output accuracy is never below the all-"no" baseline by much, whatever the real accuracy.
    assert metrics["binary_accuracy"] >= metrics["accuracy"]


def test_tensorboard_hparams_carry_real_final_metrics(trained):
    out, metrics = trained
    acc = _event_file(out)
    tags = acc.Tags()
    assert "hparams/test_uar" in tags["scalars"]
    logged = acc.Scalars("hparams/test_uar")[-1].value
    assert logged == pytest.approx(metrics["uar"], abs=1e-6)
    assert logged != -1  # Lightning's hp_metric placeholder
    assert any(t.startswith("val/confusion_matrix") for t in tags["images"])
    assert "val/uar" in tags["scalars"] and "train/loss" in tags["scalars"]
    plugin = acc.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in plugin


def test_tensorboard_scalars_and_images_share_the_epoch_axis(trained):
    out, metrics = trained
    acc = _event_file(out)
    epochs = list(range(metrics["epochs"]))
    for tag in ("val/uar", "val/loss", "train/loss", "train/uar", "train/lr"):
        assert [e.step for e in acc.Scalars(tag)] == epochs, tag
    assert [e.step for e in acc.Images("val/confusion_matrix")] == epochs
    (test_image,) = acc.Images("test/confusion_matrix")
    (test_uar,) = acc.Scalars("test/uar")
    assert test_image.step == test_uar.step


def test_cli_run_logs_one_line_per_epoch_to_its_log_file(cli_env, shared_cache, tmp_path):
    """Redirected output (not a terminal): no bar redraws, the data report once, no third-party noise."""
    res = _cli(
        "data=demo",
        "trainer.max_epochs=2",
        f"paths.cache_dir={shared_cache}",
        "model.hidden_size=16",
        env=cli_env,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    (run_dir,) = (tmp_path / "outputs" / "demo" / "train").iterdir()  # demo runs apart from real data
    lines = [ln for ln in (run_dir / "train.log").read_text().splitlines() if "| val/uar" in ln]
    assert [ln.split("epoch ")[1].split(" ")[0] for ln in lines] == ["0", "1"]
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "metrics.json").is_file()
    console = res.stdout + res.stderr
    assert "\r" not in console and "it/s" not in console
    assert console.count("Data report:") == 1 and console.count("| val/uar") == 2
    assert "train " in console and "clips," in console and "speakers" in console  # the split summary
    for noise in ("litlogger", "FLOPs", "LeafSpec", "Test metric"):
        assert noise not in console, noise


def test_progress_bar_can_be_switched_off_through_the_trainer(train_config, tmp_path):
    """trainer.enable_progress_bar=false was refused while the bar callback was configured; now it is progress=none."""
    metrics = run(train_config("trainer.enable_progress_bar=false", "progress=bar", "trainer.max_epochs=1"))
    assert metrics["status"] == "ok"


def test_mistakes_stop_before_work_with_one_line_and_code_2(cli_env, shared_cache, tmp_path):
    res = _cli("data=demo", "trainer.max_epochs=0", "optimizer.lr=-1", f"paths.cache_dir={shared_cache}", env=cli_env)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("ser.train:")]
    assert "trainer.max_epochs=0: need at least 1" in line and "optimizer.lr=-1: must be a positive number" in line
    assert not list((tmp_path / "outputs" / "demo" / "train").iterdir())  # the empty run folder is removed

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    res = _cli("data=demo", f"paths.log_dir={blocker}/runs", env=cli_env)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "cannot create" in res.stderr and "paths.log_dir" in res.stderr


def test_checkpoint_of_another_model_size_is_refused(trained, train_config):
    from ser.validate import ConfigError

    out, _ = trained  # hidden_size=128
    ckpt = out / "checkpoints" / "best.ckpt"
    with pytest.raises(ConfigError, match=r"another model size \(net\..*; it was trained with model.hidden_size=128"):
        run(train_config("train=false", f"ckpt_path={ckpt}"))  # FAST_OVERRIDES: hidden_size=32
    with pytest.raises(ConfigError, match=r"holds another model \(net\..*trained with model._target_=ser.models.lstm"):
        run(train_config("model=crnn", "train=false", f"ckpt_path={ckpt}"))


def test_testing_a_checkpoint_without_training_reproduces_its_run(trained, train_config, tmp_path, caplog):
    out, metrics = trained
    ckpt = out / "checkpoints" / "best.ckpt"
    cfg = train_config(
        "train=false", f"ckpt_path={ckpt}", "model.hidden_size=128", "model.dense_size=64", out=tmp_path / "t"
    )
    with caplog.at_level(logging.INFO, logger="ser.train"):
        again = run(cfg)
    assert again["uar"] == metrics["uar"] and again["confusion"] == metrics["confusion"]
    assert f"testing {ckpt}" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "best checkpoint" in r.getMessage()]


def test_seed_zero_counts_and_reproduces(train_config, tmp_path):
    a = run(train_config("seed=0", "trainer.max_epochs=2", out=tmp_path / "a"))
    b = run(train_config("seed=0", "trainer.max_epochs=2", out=tmp_path / "b"))
    c = run(train_config("seed=1", "trainer.max_epochs=2", out=tmp_path / "c"))
    assert a["uar"] == b["uar"] and a["confusion"] == b["confusion"]
    manifest = {k: json.loads((tmp_path / k / "split_manifest.json").read_text()) for k in "ac"}
    assert manifest["a"]["seed"] == 0
    assert manifest["a"]["test"]["speakers"] != manifest["c"]["test"]["speakers"] or a["confusion"] != c["confusion"]


def test_binary_loss_runs_and_is_recorded(train_config, tmp_path):
    metrics = run(train_config("loss=binary", "trainer.max_epochs=1"))
    assert metrics["loss"] == "binary"
    assert json.loads((tmp_path / "metrics.json").read_text())["loss"] == "binary"


def test_nan_loss_stops_with_a_message(train_config):
    cfg = train_config()
    module = build_module(cfg, input_dim=64)
    from ser.data.batching import Batch

    batch = Batch(
        torch.full((2, 5, 64), float("nan")), torch.tensor([5, 3]), torch.tensor([0, 1]), torch.tensor([0, 1])
    )
    with pytest.raises(NonFiniteLossError, match=r"loss became nan.*lower optimizer\.lr"):
        module.training_step(batch, 0)


def test_checkpoint_rebuilds_the_model_on_its_own(trained):
    out, _ = trained
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["ser_format"] == "ser-checkpoint-v1"
    module = SERModule.load_from_checkpoint(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert list(module.hparams.classes) == list(CLASSES)
    assert float(module.net.normalizer.std.min()) > 0 and float(module.net.normalizer.mean.abs().sum()) > 0


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ser.train", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=env["SER_ROOT"],
        timeout=120,
    )


def test_missing_data_names_folders_sources_and_demo(cli_env):
    res = _cli(env=cli_env)
    assert res.returncode == 2
    for needle in ("crema-d", "kaggle.com", "data=demo", "AudioWAV"):
        assert needle in res.stderr, needle
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("loss=binar", "binary"),
        ("model.hiden_size=3", "hiden_size"),
        ("data.nope=1", "nope"),
        ("model.hiden_size=3", "did you mean `model.hidden_size`?"),
        ("los=binary", "did you mean `loss`?"),
        ("loss=binar", "did you mean `loss=binary`?"),
    ],
)
def test_config_typos_get_hydras_error(cli_env, override, needle):
    res = _cli(override, env=cli_env)
    assert res.returncode == 2
    assert needle in res.stderr
    assert "Traceback" not in res.stderr and "+key" not in res.stderr


def test_help_says_what_the_command_does(cli_env):
    res = _cli("--help", env=cli_env)
    assert res.returncode == 0
    for needle in (
        "ser.train: train and test",
        "== Examples ==",
        "python -m ser.train data=demo",
        "loss ",
        "progress=",
    ):
        assert needle in res.stdout, needle


@pytest.mark.parametrize(
    "augment",
    [
        "specaugment",
        "mixup",
        "specaugment_mixup",
        "none +augment.crop.max_frames=20",
        "mixup +augment.crop.max_frames=20",
    ],
)
def test_augmented_training_repeats_under_its_seed(train_config, tmp_path, augment):
    """Augmentation acts on train batches only and draws from a seeded generator: same seed, same run."""
    a = run(train_config(*f"augment={augment}".split(), "trainer.max_epochs=1", out=tmp_path / "a"))
    b = run(train_config(*f"augment={augment}".split(), "trainer.max_epochs=1", out=tmp_path / "b"))
    plain = run(train_config("trainer.max_epochs=1", out=tmp_path / "c"))
    assert a["confusion"] == b["confusion"] and a["best_val"] == b["best_val"]
    assert a["best_val"] != plain["best_val"]  # the train batches did change


@pytest.mark.parametrize("normalization", ["utterance", "speaker"])
def test_utterance_and_speaker_normalization_train(train_config, tmp_path, normalization):
    metrics = run(train_config(f"data.normalization={normalization}", "trainer.max_epochs=1"))
    assert metrics["status"] == "ok" and metrics["uar"] is not None


def test_a_cross_corpus_run_onto_male_only_savee_is_scored_on_what_savee_holds(train_config):
    """UAR over the 6 male classes (not the female ones the model may answer), no gender accuracy: as ser.eval."""
    metrics = run(train_config("split=cross_corpus", "split.test_corpus=savee"))
    confusion = torch.tensor(metrics["confusion"], dtype=torch.float64)
    assert confusion[6:].sum() == 0 and confusion[:6].sum() == metrics["data"]["clips"]["test"]
    assert confusion[:6, 6:].sum() > 0  # some clips answered with a female class: torchmetrics would count those
    male_recall = confusion.diagonal()[:6] / confusion[:6].sum(1)
    assert metrics["uar"] == pytest.approx(float(male_recall.mean()), abs=1e-6)
    assert [metrics["per_class_recall"][c] is None for c in CLASSES] == [False] * 6 + [True] * 6
    assert metrics["gender_accuracy"] is None and "only male speakers" in metrics["skipped"]["gender_accuracy"]
    run_dir = Path(metrics["best_checkpoint"]).parents[1]
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    report = (run_dir / "classification_report.txt").read_text()
    assert "male_sad" in report and "female_sad" not in report  # its macro average covers the same 6 classes
