"""Predict emotions in recordings with a trained checkpoint: files, folders, long and live audio.

Two command shapes, one implementation (:func:`run`):

    python -m ser.predict ckpt=best.ckpt inputs=[clip.wav,recordings/] format=json
    python -m ser.predict ckpt=best.ckpt inputs=[interview.wav] window=3.0 hop=1.0 plot=timeline.png
    python -m ser.predict ckpt=best.ckpt mic=true
    ser-predict --ckpt best.ckpt clip.wav recordings/ --format csv -o predictions.csv

Results go to stdout (or ``output``), messages to stderr. An input that cannot be classified
(missing, not audio, empty, silent, too short) is named on stderr, the others are still processed,
and the exit code is 1. A bad checkpoint or option exits with 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import queue
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ser.inference import CheckpointError, InputFailure, Prediction, Predictor, split_class

log = logging.getLogger("ser.predict")

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
FORMATS = ("table", "json", "csv")
MIC_WINDOW = 3.0  # seconds, when mic=true is given without a window
LONG_INPUT_S = 60.0  # a recording this long gets a hint to use the sliding window
MIC_BLOCK = 0.1  # seconds per microphone buffer: short enough that a window is reported promptly

EXIT_OK, EXIT_INPUT_ERRORS, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    """Options that cannot work together, or a missing required one."""


@dataclass
class PredictOptions:
    """Everything one prediction command needs (the keys of conf/predict.yaml)."""

    ckpt: str | None = None
    inputs: list[str] = field(default_factory=list)
    format: str = "table"
    output: str | None = None
    window: float | None = None
    hop: float = 1.0
    mic: bool = False
    mic_device: str | int | None = None
    duration: float | None = None
    device: str = "cpu"
    batch_size: int = 64
    plot: str | None = None
    threads: int | None = None

    def check(self) -> None:
        if not self.ckpt:
            raise UsageError(
                "no checkpoint given: ckpt=PATH (or --ckpt PATH), e.g. outputs/train/<time>/checkpoints/best.ckpt"
            )
        if self.format not in FORMATS:
            raise UsageError(f"format={self.format!r}: choose one of {', '.join(FORMATS)}")
        if self.mic and self.inputs:
            raise UsageError("give either inputs or mic=true, not both")
        if not self.mic and not self.inputs:
            raise UsageError(
                "nothing to classify: give inputs=[file.wav,folder/] (or files after the flags), or mic=true"
            )
        if self.window is not None and self.window <= 0:
            raise UsageError(f"window={self.window}: must be a positive number of seconds")
        if self.hop is None or self.hop <= 0:
            raise UsageError(f"hop={self.hop}: must be a positive number of seconds")
        if self.plot and self.window is None and not self.mic:
            raise UsageError("plot needs a timeline: add window=SECONDS (or use mic=true)")
        if self.batch_size < 1:
            raise UsageError(f"batch_size={self.batch_size}: must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads={self.threads}: must be at least 1 (or null for torch's default)")
        if self.duration is not None and self.duration <= 0:
            raise UsageError(f"duration={self.duration}: must be positive seconds (or null for no limit)")


# -- output formats -------------------------------------------------------------------------------


def csv_header(classes: Sequence[str], timeline: bool) -> list[str]:
    times = ["start", "end", "silent"] if timeline else []
    return ["path", *times, "label", "gender", "emotion", *classes]


def csv_row(p: Prediction, timeline: bool) -> list[Any]:
    times = [f"{p.start:.3f}", f"{p.end:.3f}", int(p.silent)] if timeline else []
    probs = [""] * len(p.classes) if p.probabilities is None else [f"{x:.6f}" for x in p.probabilities]
    return [p.path, *times, p.label or "", p.gender or "", p.emotion or "", *probs]


def format_csv(preds: Sequence[Prediction], classes: Sequence[str], timeline: bool) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_header(classes, timeline))
    writer.writerows(csv_row(p, timeline) for p in preds)
    return buf.getvalue()


def format_json(preds: Sequence[Prediction]) -> str:
    return json.dumps([p.to_dict() for p in preds], indent=2) + "\n"


def table_cells(p: Prediction, timeline: bool) -> list[str]:
    times = [f"{p.start:.2f}", f"{p.end:.2f}"] if timeline else []
    if p.silent:
        return [p.path, *times, "(silent)", "", "", ""]
    return [p.path, *times, p.label or "", f"{p.confidence:.3f}", p.gender or "", p.emotion or ""]


def table_header(timeline: bool) -> list[str]:
    return ["path", *(["start_s", "end_s"] if timeline else []), "label", "prob", "gender", "emotion"]


def format_table(preds: Sequence[Prediction], timeline: bool) -> str:
    rows = [table_header(timeline)] + [table_cells(p, timeline) for p in preds]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows)


def render(preds: Sequence[Prediction], fmt: str, classes: Sequence[str], timeline: bool) -> str:
    if fmt == "json":
        return format_json(preds)
    if fmt == "csv":
        return format_csv(preds, classes, timeline)
    return format_table(preds, timeline)


class LiveWriter:
    """Writes timeline rows as they arrive: fixed-width table rows, CSV rows, or JSON Lines."""

    def __init__(self, out: TextIO, fmt: str, classes: Sequence[str]) -> None:
        self.out, self.fmt, self.classes = out, fmt, classes
        self.csv = csv.writer(out, lineterminator="\n")
        if fmt == "csv":
            self.csv.writerow(csv_header(classes, True))
        elif fmt == "table":
            self._table_row(table_header(True))
        out.flush()

    def _table_row(self, cells: list[str]) -> None:
        widths = [8, 8, 8, 16, 6, 7, 8]
        self.out.write("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip() + "\n")

    def write(self, p: Prediction) -> None:
        if self.fmt == "json":
            self.out.write(json.dumps(p.to_dict()) + "\n")
        elif self.fmt == "csv":
            self.csv.writerow(csv_row(p, True))
        else:
            self._table_row(table_cells(p, True))
        self.out.flush()


def plot_timeline(preds: Sequence[Prediction], path: str | Path, title: str = "") -> Path:
    """Emotion probabilities (both genders summed) and P(female) over time, one point per window."""
    from ser.plots import plt, save_figure

    classes = preds[0].classes if preds else ()
    emotions = list(dict.fromkeys(split_class(c)[1] for c in classes))
    centres = np.array([(p.start + p.end) / 2 for p in preds if p.start is not None and p.end is not None])
    probs = np.array(
        [np.full(len(classes), np.nan) if p.probabilities is None else p.probabilities for p in preds]
    ).reshape(len(preds), len(classes))
    fig, (ax, ax_g) = plt.subplots(2, 1, sharex=True, figsize=(10, 5.5), height_ratios=[3, 1])
    curves = {e: probs[:, [i for i, c in enumerate(classes) if split_class(c)[1] == e]].sum(1) for e in emotions}
    for emotion, curve in curves.items():
        ax.plot(centres, curve, marker=".", label=emotion)
    ax.set_ylabel("P(emotion)")
    # A fixed 0..1 scale keeps files comparable (sigmoid sums of the binary model may pass 1).
    top = max((float(np.nanmax(c, initial=0.0)) for c in curves.values()), default=1.0)
    ax.set_ylim(0, max(1.0, top))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(title or "emotion over time")
    ax.grid(alpha=0.3)
    female = [i for i, c in enumerate(classes) if split_class(c)[0] == "female"]
    ax_g.plot(centres, probs[:, female].sum(1), color="tab:purple", marker=".")
    ax_g.set_ylabel("P(female)")
    ax_g.set_ylim(0, 1)
    ax_g.set_xlabel("time (s, window centre)")
    ax_g.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_paths(plot: str, inputs: Sequence[str]) -> list[Path]:
    """One PNG per timeline: ``plot`` itself for one input, ``<stem>-<input stem>.png`` for several."""
    base = Path(plot)
    if len(inputs) == 1:
        return [base]
    out: list[Path] = []
    for path in inputs:
        candidate = base.with_name(f"{base.stem}-{Path(path).stem}{base.suffix or '.png'}")
        n = 2
        while candidate in out:
            candidate = base.with_name(f"{base.stem}-{Path(path).stem}-{n}{base.suffix or '.png'}")
            n += 1
        out.append(candidate)
    return out


# -- microphone -------------------------------------------------------------------------------------


def microphone_blocks(
    device: str | int | None = None, duration: float | None = None, sample_rate: int | None = None
) -> tuple[Iterator[np.ndarray], int]:
    """Mono float32 microphone buffers and their sample rate (the device's default unless given)."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:  # OSError: the package is there but PortAudio is not
        raise UsageError(
            f"mic=true needs the optional sounddevice package and the PortAudio library ({exc}); "
            "install them with: pip install 'ser[live]'"
        ) from exc
    if sample_rate is None:
        sample_rate = int(sd.query_devices(device, "input")["default_samplerate"])
    rate = int(sample_rate)
    blocks: queue.Queue[np.ndarray] = queue.Queue()

    def callback(indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status:
            log.warning("microphone: %s", status)
        blocks.put(indata.copy())

    def generate() -> Iterator[np.ndarray]:
        limit = None if duration is None else round(duration * rate)
        seen = 0
        with sd.InputStream(
            samplerate=rate,
            channels=1,
            dtype="float32",
            blocksize=round(MIC_BLOCK * rate),
            device=device,
            callback=callback,
        ):
            try:
                while limit is None or seen < limit:
                    block = blocks.get()
                    if limit is not None:
                        block = block[: limit - seen]
                    seen += len(block)
                    yield block
            except KeyboardInterrupt:
                # Ctrl-C ends the stream like the end of a file: the windows still open are reported.
                log.info("stopped; finishing the last window")

    return generate(), rate


# -- the command ------------------------------------------------------------------------------------


def _error(message: str) -> None:
    print(f"ser.predict: {message}", file=sys.stderr)


def _emit(text: str, output: str | None, stdout: TextIO) -> None:
    if output is None:
        stdout.write(text)
        stdout.flush()
        return
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    _error(f"results written to {path}")


def run_files(predictor: Predictor, opts: PredictOptions, stdout: TextIO) -> int:
    """One prediction per file, or a timeline per file when ``opts.window`` is set."""
    timeline = opts.window is not None
    preds: list[Prediction] = []
    failures: list[InputFailure] = []
    timelines: list[tuple[str, list[Prediction]]] = []
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
            (failures if isinstance(result, InputFailure) else preds).append(result)  # type: ignore[arg-type]
    for failure in failures:
        _error(f"error: {failure}")
    if preds or opts.format != "table":
        _emit(render(preds, opts.format, predictor.classes, timeline), opts.output, stdout)
    if opts.plot and timelines:
        for (path, rows), png in zip(timelines, plot_paths(opts.plot, [p for p, _ in timelines]), strict=True):
            _error(f"timeline plot: {plot_timeline(rows, png, title=Path(path).name)}")
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
    out: TextIO = stdout if opts.output is None else open(opts.output, "w")  # noqa: SIM115
    rows: list[Prediction] = []
    try:
        writer = LiveWriter(out, opts.format, predictor.classes)
        try:
            for p in predictor.stream(blocks, window, opts.hop, sample_rate=sample_rate, path=name):
                rows.append(p)
                writer.write(p)
        except KeyboardInterrupt:
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
        predictor = Predictor.from_checkpoint(opts.ckpt or "", device=opts.device, batch_size=opts.batch_size)
        if opts.mic:
            blocks, rate = microphone_blocks(opts.mic_device, opts.duration)
            _error(f"listening on the microphone at {rate} Hz; Ctrl-C stops")
            return run_stream(predictor, opts, blocks, rate, stdout)
        return run_files(predictor, opts, stdout)
    except (UsageError, CheckpointError) as exc:
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
    plain["inputs"] = [str(inputs)] if isinstance(inputs, (str, Path)) else [str(i) for i in inputs]
    known = set(PredictOptions.__dataclass_fields__)
    unknown = sorted(set(plain) - known)
    if unknown:
        raise UsageError(f"unknown option(s) {unknown}; the keys are {sorted(known)}")
    return PredictOptions(**plain)


def setup_logging(prefix: str = "ser.predict") -> None:
    """Messages of the ``ser`` loggers to stderr; other libraries' loggers are left alone."""
    logger = logging.getLogger("ser")
    logger.setLevel(logging.INFO)
    if not any(getattr(h, "_ser_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
        handler._ser_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    """``python -m ser.predict ckpt=... inputs=[...] [format=json] [window=3 hop=1] [mic=true]``."""
    setup_logging()
    try:
        opts = options_from_config(cfg)
    except UsageError as exc:
        _error(str(exc))
        sys.exit(EXIT_USAGE)
    sys.exit(run(opts))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ser-predict",
        description="Predict the gender x emotion class of recordings with a ser.train checkpoint.",
        epilog="Exit codes: 0 all inputs classified, 1 some inputs gave no prediction, 2 bad checkpoint or options.",
    )
    p.add_argument("inputs", nargs="*", help="audio files and/or folders (searched recursively)")
    p.add_argument("--ckpt", required=True, help="checkpoint (.ckpt) written by ser.train")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("-o", "--output", help="write results to this file instead of stdout")
    p.add_argument("--window", type=float, help="seconds per window: a timeline per input")
    p.add_argument("--hop", type=float, default=1.0, help="seconds between window starts (default: 1.0)")
    p.add_argument("--mic", action="store_true", help="classify live microphone input (needs ser[live])")
    p.add_argument("--mic-device", help="sounddevice input device (index or name)")
    p.add_argument("--duration", type=float, help="seconds of microphone input (default: until Ctrl-C)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda or auto (default: cpu)")
    p.add_argument("--batch-size", type=int, default=64, help="clips or windows per forward pass")
    p.add_argument("--plot", help="PNG of emotion probabilities over time (with --window or --mic)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return p


def cli(argv: Sequence[str] | None = None) -> int:
    """``ser-predict --ckpt best.ckpt clip.wav folder/ [--format json] [--window 3 --hop 1]``."""
    setup_logging()
    args = build_parser().parse_args(argv)
    mic_device: str | int | None = args.mic_device
    if isinstance(mic_device, str) and mic_device.isdigit():
        mic_device = int(mic_device)
    opts = PredictOptions(
        ckpt=args.ckpt,
        inputs=list(args.inputs),
        format=args.format,
        output=args.output,
        window=args.window,
        hop=args.hop,
        mic=args.mic,
        mic_device=mic_device,
        duration=args.duration,
        device=args.device,
        batch_size=args.batch_size,
        plot=args.plot,
        threads=args.threads,
    )
    return run(opts)


if __name__ == "__main__":
    main()
