"""What commands print: bars only on a terminal, the data report once and grouped, no third-party noise."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

from ser.data.report import format_report, group_exclusions
from ser.labels import CLASSES
from ser.logs import (
    ModelSummaryLines,
    console_callbacks,
    data_report_text,
    is_terminal,
    prints_full_report,
    quiet_third_party,
    show_bars,
    split_lines,
)
from ser.runtime import mark_failed, runs_subdir

SUMMARY = {
    "corpora": ["crema_d", "savee"],
    "split": "speaker",
    "split_seed": 0,
    "fold": None,
    "speaker_independent": True,
    "clips": {"train": 4300, "val": 900, "test": 917},
    "speakers": {"train": 50, "val": 12, "test": 12},
    "hours": 4.44,
    "excluded": 46,
}


def _report() -> dict:
    excluded = [
        {"path": f"/data/savee/AudioData/{spk}/su{i:02d}.wav", "corpus": "savee", "reason": "no class: surprise"}
        for spk in ("DC", "JE", "JK")
        for i in range(1, 16)
    ]
    excluded.append({"path": "/data/crema-d/AudioWAV/1076_MTI_SAD_XX.wav", "corpus": "crema_d", "reason": "silent"})
    per_class = dict.fromkeys(CLASSES, 10)
    corpus = {"clips": 120, "hours": 0.1, "speakers": {"male": 2}, "per_class": per_class, "excluded": {}}
    return {"roots": {}, "clips": 120, "hours": 0.1, "corpora": {"savee": corpus}, "excluded": excluded}


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize(
    ("stdout", "stderr", "expected"), [(True, True, True), (False, True, False), (True, False, False)]
)
def test_auto_draws_bars_only_on_a_terminal(monkeypatch, stdout, stderr, expected):
    monkeypatch.setattr(sys, "stdout", _Stream(stdout))
    monkeypatch.setattr(sys, "stderr", _Stream(stderr))
    assert is_terminal() is expected
    assert show_bars("auto") is expected and show_bars(None) is expected
    assert show_bars("bar") is True and show_bars(True) is True
    assert show_bars("none") is False and show_bars(False) is False
    with pytest.raises(ValueError, match="progress='sometimes': choose one of auto, bar, none"):
        show_bars("sometimes")


def test_console_callbacks_drop_the_bar_and_add_a_summary_without_flops():
    bar, ckpt = TQDMProgressBar(refresh_rate=10), ModelCheckpoint()
    kept = console_callbacks([bar, ckpt], bars=False, model_summary=True)
    assert bar not in kept and ckpt in kept and any(isinstance(c, ModelSummaryLines) for c in kept)
    assert console_callbacks([bar, ckpt], bars=True, model_summary=False) == [bar, ckpt]


def test_model_summary_lines_have_no_flops(caplog):
    data = [
        ("Name", ["net", "loss_fn"]),
        ("Type", ["LSTMClassifier", "CategoricalLoss"]),
        ("Params", ["108 K", "0"]),
        ("Mode", ["train", "train"]),
        ("FLOPs", ["0", "0"]),
    ]
    with caplog.at_level(logging.INFO, logger="ser.train"):
        ModelSummaryLines.summarize(data, 108_000, 108_000, 0.43, {"train": 50, "eval": 0}, total_flops=0)
    text = caplog.text
    assert "model: 108 K parameters (108 K trainable), 0.43 MB" in text and "LSTMClassifier" in text
    assert "FLOPs" not in text and "CategoricalLoss" not in text  # rows without parameters are left out


def test_lightning_advert_is_dropped(caplog):
    quiet_third_party()
    quiet_third_party()  # idempotent: one filter, not two
    import lightning_utilities.core.rank_zero as rank_zero

    assert sum(type(f).__name__ == "_DropAdverts" for f in rank_zero.log.filters) == 1
    with caplog.at_level(logging.INFO):
        rank_zero.log.info("💡 Tip: For seamless cloud logging ... litlogger ...")
        rank_zero.log.info("GPU available: False, used: False")
    assert "litlogger" not in caplog.text and "GPU available" in caplog.text


def test_exclusions_are_grouped_by_reason():
    lines = group_exclusions(_report()["excluded"])
    assert lines == [
        "  45 x savee su*.wav: no class: surprise",
        "   1 x crema_d /data/crema-d/AudioWAV/1076_MTI_SAD_XX.wav: silent",
    ]
    text = format_report(_report())
    assert "Excluded files (46, by reason):" in text and "su01.wav" not in text


def test_full_report_has_a_three_line_split_summary():
    text = data_report_text(_report(), SUMMARY, full=True)
    assert text.startswith("Data report:")
    assert text.endswith("\n".join(split_lines(SUMMARY)))
    assert split_lines(SUMMARY) == [
        "train 4300 clips,  50 speakers",
        "val    900 clips,  12 speakers",
        "test   917 clips,  12 speakers",
    ]
    assert "split speaker (seed 0, speaker-independent):" in text


def test_later_sweep_jobs_print_one_line():
    assert prints_full_report(None) and prints_full_report(0) and prints_full_report("0")
    assert not prints_full_report(3)
    line = data_report_text(_report(), SUMMARY, full=False)
    assert "\n" not in line
    assert line.startswith("data: 120 clips, 0.10 h, 46 excluded; split speaker seed 0: train 4300 clips/50 spk")


def test_demo_runs_land_apart():
    assert runs_subdir(["demo"]) == "demo/" and runs_subdir("demo") == "demo/"
    assert runs_subdir(["crema_d", "savee"]) == "" and runs_subdir(["demo", "savee"]) == ""


def test_failed_run_folder_is_removed_when_empty_else_renamed(tmp_path):
    empty = tmp_path / "2025-01-01_00-00-00"
    (empty / ".hydra").mkdir(parents=True)
    (empty / "train.log").write_text("x")
    assert mark_failed(empty) is None and not empty.exists()
    used = tmp_path / "2025-01-01_00-00-01"
    (used / "checkpoints").mkdir(parents=True)
    assert mark_failed(used) == tmp_path / "2025-01-01_00-00-01-FAILED"
    assert (tmp_path / "2025-01-01_00-00-01-FAILED" / "checkpoints").is_dir()
