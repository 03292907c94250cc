"""Predict emotions in recordings with a trained checkpoint: files, folders, long and live audio.

    python -m ser.predict ckpt=best.ckpt inputs=[clip.wav,recordings/] format=json
    python -m ser.predict ckpt=best.ckpt inputs=[interview.wav] window=3.0 hop=1.0 plot=timeline.png
    python -m ser.predict ckpt=best.ckpt inputs=[interview.wav] window=3.0 hop=1.0 segments=true
    python -m ser.predict ckpt=best.ckpt mic=true
    python -m ser.predict ckpt=[a.ckpt,b.ckpt] inputs=[clip.wav]    # ensemble (or ckpt=<sweep folder>)
    ser-predict ckpt=best.ckpt inputs=[clip.wav,recordings/] format=csv output=predictions.csv

``ser-predict`` is the same command installed as a script. Results go to stdout (or ``output``),
messages to stderr. An input that cannot be classified (missing, not audio, empty, silent, too
short, NaN or inf samples) is named on stderr (and under ``errors`` in JSON), the others are still
processed, and the exit code is 1. A bad checkpoint or option exits with 2. The output formats and
the JSON schema are described in :mod:`ser.inference.outputs`. Several checkpoints (a list, or a run or
sweep folder: every job's ``checkpoints/best.ckpt``) predict as one ensemble, their probabilities averaged
(:mod:`ser.inference.ensemble`).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ser.inference.ensemble import EnsemblePredictor, load_predictor
from ser.inference.mic import MicrophoneUnavailable, microphone_blocks
from ser.inference.outputs import FORMATS, LiveWriter, Row, make_header, plot_paths, plot_timeline, render
from ser.inference.prediction import InputFailure, Prediction, merge_segments
from ser.inference.predictor import Predictor
from ser.models.checkpoint import CheckpointError
from ser.results import write_text
from ser.runtime import run_command, setup_logging

log = logging.getLogger("ser.predict")

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
MIC_WINDOW = 3.0  # seconds, when mic=true is given without a window
LONG_INPUT_S = 60.0  # a recording this long gets a hint to use the sliding window

EXIT_OK, EXIT_INPUT_ERRORS, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    """Options that cannot work together, or a missing required one."""


@dataclass
class PredictOptions:
    """Everything one prediction command needs (the keys of conf/predict.yaml)."""

    ckpt: str | list[str] | None = None  # a list or a run/sweep folder: an ensemble (mean probabilities)
    inputs: list[str] = field(default_factory=list)
    format: str = "table"
    output: str | None = None
    window: float | None = None
    hop: float = 1.0
    segments: bool = False
    mic: bool = False
    mic_device: str | int | None = None
    duration: float | None = None
    device: str = "cpu"
    batch_size: int = 64
    plot: str | None = None
    threads: int | None = None
    one_speaker: bool = False

    def check(self) -> None:
        if not self.ckpt:
            raise UsageError("no checkpoint given: ckpt=PATH, e.g. outputs/train/<time>/checkpoints/best.ckpt")
        if self.format not in FORMATS:
            raise UsageError(f"format={self.format!r}: choose one of {', '.join(FORMATS)}")
        if self.mic and self.inputs:
            raise UsageError("give either inputs or mic=true, not both")
        if not self.mic and not self.inputs:
            raise UsageError("nothing to classify: give inputs=[file.wav,folder/], or mic=true")
        if self.window is not None and self.window <= 0:
            raise UsageError(f"window={self.window}: must be a positive number of seconds")
        if self.hop is None or self.hop <= 0:
            raise UsageError(f"hop={self.hop}: must be a positive number of seconds")
        if self.segments and self.window is None and not self.mic:
            raise UsageError("segments merge the windows of a timeline: add window=SECONDS (or use mic=true)")
        if self.plot and self.window is None and not self.mic:
            raise UsageError("plot needs a timeline: add window=SECONDS (or use mic=true)")
        if self.batch_size < 1:
            raise UsageError(f"batch_size={self.batch_size}: must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads={self.threads}: must be at least 1 (or null for torch's default)")
        if self.duration is not None and self.duration <= 0:
            raise UsageError(f"duration={self.duration}: must be positive seconds (or null for no limit)")


# -- the command ------------------------------------------------------------------------------------


def _error(message: str) -> None:
    print(f"ser.predict: {message}", file=sys.stderr)


def _emit(text: str, output: str | None, stdout: TextIO) -> None:
    if output is None:
        stdout.write(text)
        stdout.flush()
        return
    # Through a temporary file and a rename: a kill or a full disk leaves the earlier file whole, never a part.
    path = write_text(output, text)
    _error(f"results written to {path}")


def _header(opts: PredictOptions, predictor: Predictor, mode: str, window: float | None) -> dict[str, Any]:
    """The output header; an ensemble's names the folder given (or its members' common folder) as ``checkpoint``
    and lists every member under ``checkpoints``."""
    if not isinstance(predictor, EnsemblePredictor):  # the file (also when given as its run folder)
        return make_header(predictor.source, predictor.classes, predictor.sample_rate, mode, window, opts.hop)
    members = [os.path.abspath(m.source) for m in predictor.members]
    given = opts.ckpt if isinstance(opts.ckpt, str) else os.path.commonpath(members)
    header = make_header(given or "", predictor.classes, predictor.sample_rate, mode, window, opts.hop)
    header["checkpoints"] = members
    return header


def fit_one_speaker(predictor: Predictor, inputs: Sequence[str]) -> None:
    """Treat all inputs as one speaker: a model trained with utterance or speaker normalization then
    normalizes them with the statistics of all their frames, as training normalized each speaker."""
    members = getattr(predictor, "members", [predictor])  # an ensemble normalizes per member
    if all(m.normalization == "global" for m in members):
        log.warning("one_speaker=true: this model standardizes with its training statistics; nothing changes")
        return
    waves = [w for _, w in (item for chunk in predictor.iter_inputs(inputs) for item in chunk)]
    waves = [w for w in waves if not isinstance(w, InputFailure)]
    if waves:
        predictor.fit_speaker(waves)
        log.info("one_speaker=true: normalizing with the statistics of %d input(s)", len(waves))


def run_files(predictor: Predictor, opts: PredictOptions, stdout: TextIO) -> int:
    """One prediction per file, or a timeline per file when ``opts.window`` is set."""
    timeline = opts.window is not None
    mode = ("segments" if opts.segments else "timeline") if timeline else "files"
    header = _header(opts, predictor, mode, opts.window)
    preds: list[Prediction] = []
    failures: list[InputFailure] = []
    timelines: list[tuple[str, list[Prediction]]] = []
    if opts.one_speaker:
        fit_one_speaker(predictor, opts.inputs)
    if timeline:
        assert opts.window is not None
        for path, result in predictor.timeline_files(opts.inputs, opts.window, opts.hop):
            if isinstance(result, InputFailure):
                failures.append(result)
            else:
                timelines.append((path, result))
                preds.extend(result)
    else:
        for result in predictor.predict_files(opts.inputs):
            if isinstance(result, Prediction) and result.duration > LONG_INPUT_S:
                log.warning(
                    "%s: one prediction over all %.0f s; window=3.0 gives a timeline instead",
                    result.path,
                    result.duration,
                )
            if isinstance(result, Prediction) and not result.finite:
                # Only a broken network gets here (inputs with NaN/inf samples fail to decode).
                result = InputFailure(result.path, "the network gave non-finite (NaN or inf) probabilities")
            (failures if isinstance(result, InputFailure) else preds).append(result)  # type: ignore[arg-type]
    for failure in failures:
        _error(f"error: {failure}")
    rows: list[Row] = list(merge_segments(preds)) if mode == "segments" else list(preds)
    if rows or opts.format != "table":
        _emit(render(rows, opts.format, header, failures), opts.output, stdout)
    if opts.plot and timelines:
        for (path, windows), png in zip(timelines, plot_paths(opts.plot, [p for p, _ in timelines]), strict=True):
            _error(f"timeline plot: {plot_timeline(windows, png, title=Path(path).name)}")
    if failures:
        total = len(failures) + (len(timelines) if timeline else len(preds))
        _error(f"{len(failures)} of {total} inputs gave no prediction (see the errors above)")
        return EXIT_INPUT_ERRORS
    return EXIT_OK


def run_stream(
    predictor: Predictor,
    opts: PredictOptions,
    blocks: Iterator[np.ndarray],
    sample_rate: int,
    stdout: TextIO,
    name: str = "<mic>",
) -> int:
    """Live timeline of a block stream (the microphone, or any iterator of audio buffers)."""
    window = opts.window if opts.window is not None else MIC_WINDOW
    mode = "segments" if opts.segments else "timeline"
    header = _header(opts, predictor, mode, window)
    out: TextIO = stdout if opts.output is None else open(opts.output, "w")  # noqa: SIM115
    rows: list[Prediction] = []
    try:
        writer = LiveWriter(out, opts.format, header)

        def windows() -> Iterator[Prediction]:
            for p in predictor.stream(blocks, window, opts.hop, sample_rate=sample_rate, path=name):
                rows.append(p)
                yield p

        live: Iterator[Row] = merge_segments(windows()) if opts.segments else windows()
        written = 0
        try:
            for row in live:
                writer.write(row)
                written += 1
        except KeyboardInterrupt:
            if opts.segments:  # the open segment ends where the input stopped
                for row in list(merge_segments(rows))[written:]:
                    writer.write(row)
            _error("stopped")
    finally:
        if out is not stdout:
            out.close()
    if opts.plot and rows:
        _error(f"timeline plot: {plot_timeline(rows, opts.plot, title=name)}")
    return EXIT_OK


def run(opts: PredictOptions, stdout: TextIO | None = None) -> int:
    """Run one prediction command; returns the exit code (0 ok, 1 some inputs failed, 2 unusable)."""
    stdout = stdout or sys.stdout
    try:
        opts.check()
        if opts.threads:
            torch.set_num_threads(opts.threads)
        predictor = load_predictor(opts.ckpt or "", device=opts.device, batch_size=opts.batch_size)
        if opts.mic:
            blocks, rate = microphone_blocks(opts.mic_device, opts.duration)
            _error(f"listening on the microphone at {rate} Hz; Ctrl-C stops")
            return run_stream(predictor, opts, blocks, rate, stdout)
        return run_files(predictor, opts, stdout)
    except (UsageError, CheckpointError, MicrophoneUnavailable) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except ValueError as exc:  # e.g. a window shorter than one feature frame
        _error(f"error: {exc}")
        return EXIT_USAGE


# -- entry points -----------------------------------------------------------------------------------


def options_from_config(cfg: DictConfig) -> PredictOptions:
    """PredictOptions from the Hydra config (conf/predict.yaml plus overrides)."""
    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    plain.pop("hydra", None)
    inputs = plain.get("inputs") or []
    if isinstance(plain.get("ckpt"), list):
        plain["ckpt"] = [str(c) for c in plain["ckpt"]]
    plain["inputs"] = [str(inputs)] if isinstance(inputs, (str, Path)) else [str(i) for i in inputs]
    known = set(PredictOptions.__dataclass_fields__)
    unknown = sorted(set(plain) - known)
    if unknown:
        raise UsageError(f"unknown option(s) {unknown}; the keys are {sorted(known)}")
    if plain.get("output") is not None:
        check_writable(str(plain["output"]))
    return PredictOptions(**plain)


def check_writable(output: str) -> None:
    """Stop before any prediction when ``output`` cannot be written, rather than after all of them."""
    folder = Path(output).absolute().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ser-predict-"):
            pass
    except OSError as exc:
        reason = exc.strerror or exc
        raise UsageError(f"output={output}: cannot write there ({reason}); choose a writable path") from exc


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    """``python -m ser.predict ckpt=... inputs=[...] [format=json] [window=3 hop=1] [mic=true]``."""
    setup_logging("ser.predict")
    try:
        opts = options_from_config(cfg)
    except UsageError as exc:
        _error(str(exc))
        sys.exit(EXIT_USAGE)
    sys.exit(run(opts))


def cli() -> None:
    """``python -m ser.predict`` / ``ser-predict``: a mistake in the command line is one line and exit code 2."""
    run_command(main, "ser.predict", CONFIG_DIR, "predict")


if __name__ == "__main__":
    cli()
