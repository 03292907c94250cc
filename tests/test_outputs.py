"""Output formats of predictions: one set of field names, segments of a timeline, JSON without NaN."""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
from typing import Any

import numpy as np
import pytest

import ser
from ser.inference import outputs
from ser.inference.outputs import (
    LiveWriter,
    columns,
    csv_header,
    format_table,
    make_header,
    render,
    table_header,
)
from ser.inference.prediction import InputFailure, Prediction, Segment, merge_segments

CLASSES = ("female_angry", "female_sad", "male_angry", "male_sad")


def strict_loads(text: str) -> Any:
    """json.loads that rejects NaN and Infinity (Python's default reader accepts them; JSON does not)."""

    def reject(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=reject)


def window(start: float, probs: list[float] | None, path: str = "a.wav", length: float = 1.0) -> Prediction:
    arr = None if probs is None else np.array(probs, dtype=np.float32)
    return Prediction(path, CLASSES, arr, start=start, end=start + length)


def clip(probs: list[float], path: str = "a.wav") -> Prediction:
    return Prediction(path, CLASSES, np.array(probs, dtype=np.float32))


ANGRY = [0.7, 0.1, 0.1, 0.1]
SAD = [0.1, 0.6, 0.2, 0.1]
NAN = [float("nan"), 0.2, 0.3, 0.1]


def rows_of(mode: str) -> list[Prediction] | list[Segment]:
    if mode == "files":
        return [clip(ANGRY), clip(SAD, "b.wav")]
    timeline = [window(0.0, ANGRY), window(0.5, None), window(1.0, SAD)]
    return list(merge_segments(timeline)) if mode == "segments" else timeline


@pytest.mark.parametrize("mode", outputs.MODES)
def test_the_same_field_names_in_every_format(mode: str) -> None:
    keys = columns(mode)
    rows = rows_of(mode)
    header = make_header("best.ckpt", CLASSES, 16000, mode, 1.0, 0.5)
    doc = strict_loads(render(rows, "json", header))
    assert all(list(r) == keys for r in doc["predictions"])
    table = render(rows, "table", header).splitlines()
    assert table[0].split() == table_header(mode)
    assert set(table_header(mode)) <= set(keys)
    csv_rows = list(csv.reader(io.StringIO(render(rows, "csv", header))))
    expanded = [c for k in keys for c in (CLASSES if k == "probabilities" else [k])]
    assert csv_rows[0] == csv_header(CLASSES, mode) == expanded
    assert len(csv_rows) == len(rows) + 1 and len(table) == len(rows) + 1


def test_header_says_what_made_the_predictions() -> None:
    h = make_header("ckpts/best.ckpt", CLASSES, 16000)
    assert list(h) == ["ser_version", "created", "checkpoint", "mode", "window", "hop", "sample_rate", "classes"]
    assert h["ser_version"] == ser.__version__
    assert h["checkpoint"].endswith("ckpts/best.ckpt") and h["checkpoint"].startswith("/")
    assert (h["mode"], h["window"], h["hop"]) == ("files", None, None)  # the default hop means nothing here
    assert h["classes"] == list(CLASSES) and h["sample_rate"] == 16000
    t = make_header("best.ckpt", CLASSES, 16000, "segments", 3, 1)
    assert (t["window"], t["hop"]) == (3.0, 1.0)
    with pytest.raises(ValueError, match="mode='clips'"):
        make_header("best.ckpt", CLASSES, 16000, "clips")


def test_version_of_a_source_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert outputs.ser_version() == ser.__version__


def test_non_finite_probabilities_are_null_and_name_no_label() -> None:
    bad = clip(NAN)
    assert not bad.finite and bad.label is None and bad.confidence is None
    d = bad.to_dict()
    assert d["probabilities"]["female_angry"] is None and d["probabilities"]["female_sad"] == pytest.approx(0.2)
    header = make_header("best.ckpt", CLASSES, 16000)
    text = render([bad, clip(ANGRY)], "json", header, [InputFailure("c.wav", "silent: nothing to classify")])
    doc = strict_loads(text)
    json.dumps(doc, allow_nan=False)
    assert doc["predictions"][0]["label"] is None and doc["predictions"][1]["label"] == "female_angry"
    assert doc["errors"] == [{"path": "c.wav", "reason": "silent: nothing to classify"}]
    inf = window(0.0, [float("inf"), 0.0, 0.0, 0.0])
    strict_loads(render([inf], "json", make_header("b.ckpt", CLASSES, 16000, "timeline", 1, 1)))
    row = next(csv.DictReader(io.StringIO(render([bad], "csv", header))))
    assert row["label"] == "" and row["female_angry"] == "" and row["female_sad"] == "0.200000"
    assert "(non-finite)" in format_table([bad], "files")


def test_silent_windows_say_so() -> None:
    silent = window(2.0, None)
    d = silent.to_dict()
    assert d["silent"] is True
    assert (d["label"], d["confidence"], d["probabilities"]) == (None, None, None)
    table = format_table([silent], "timeline").splitlines()
    assert table[1].split() == ["a.wav", "2.00", "3.00", "(silent)"]


def test_segments_merge_consecutive_windows_with_one_label() -> None:
    windows = [
        window(0.0, ANGRY, length=2.0),
        window(1.0, [0.9, 0.05, 0.03, 0.02], length=2.0),
        window(2.0, SAD, length=2.0),
        window(3.0, None, length=2.0),
        window(4.0, None, length=2.0),
        window(5.0, ANGRY, length=1.5),
        window(0.0, ANGRY, path="b.wav", length=2.0),  # another recording starts a new segment
    ]
    segs = list(merge_segments(windows))
    assert [(s.path, s.start, s.end, s.label, s.windows) for s in segs] == [
        ("a.wav", 0.0, 3.0, "female_angry", 2),
        ("a.wav", 2.0, 4.0, "female_sad", 1),
        ("a.wav", 3.0, 6.0, None, 2),
        ("a.wav", 5.0, 6.5, "female_angry", 1),
        ("b.wav", 0.0, 2.0, "female_angry", 1),
    ]
    assert segs[0].confidence == pytest.approx(0.8)  # the mean of 0.7 and 0.9
    assert segs[2].silent and segs[2].confidence is None
    assert sum(s.windows for s in segs) == len(windows)
    assert segs[1].to_dict()["gender"] == "female" and segs[1].to_dict()["emotion"] == "sad"
    assert list(merge_segments([])) == []


def test_segments_come_out_as_soon_as_they_end() -> None:
    seen: list[float] = []

    def stream():
        for w in (window(0.0, ANGRY), window(1.0, ANGRY), window(2.0, SAD), window(3.0, SAD)):
            seen.append(w.start)
            yield w

    merged = merge_segments(stream())
    first = next(merged)
    assert first.label == "female_angry" and seen == [0.0, 1.0, 2.0]  # closed by the first sad window
    assert next(merged).windows == 2


@pytest.mark.parametrize("fmt", outputs.FORMATS)
def test_live_writer(fmt: str) -> None:
    out = io.StringIO()
    header = make_header("best.ckpt", CLASSES, 16000, "segments", 1.0, 1.0)
    writer = LiveWriter(out, fmt, header)
    for seg in merge_segments([window(0.0, ANGRY), window(1.0, ANGRY), window(2.0, None)]):
        writer.write(seg)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    if fmt == "json":  # JSON Lines: the header first, then one row per line
        assert strict_loads(lines[0]) == {"header": header}
        assert [strict_loads(line)["windows"] for line in lines[1:]] == [2, 1]
    elif fmt == "csv":
        assert lines[0].split(",") == csv_header(CLASSES, "segments")
    else:
        assert lines[0].split() == table_header("segments")
        assert lines[1].split() == ["a.wav", "0.00", "2.00", "female_angry", "female", "angry", "0.700", "2"]
