"""Compare the runs of a sweep: ``python -m ser.compare outputs/multirun/<time>/ | --latest TASK [--metric uar]``.

Reads every job folder of a Hydra sweep (``.hydra/overrides.yaml``, ``.hydra/config.yaml``,
``metrics.json``), groups the runs by whatever the sweep varied (seed/fold excluded: those are the
repetitions), and writes ``comparison.md``, ``comparison.csv`` and figures: per-group mean, sd and
t-based 95% CI of every test metric; paired differences between the losses over the same seeds/folds
with a paired t-test and a Wilcoxon signed-rank test; a plain-words verdict; the per-output
``binary_accuracy`` next to the 11/12 = 91.7% that a model predicting no class at all scores (where
the original "92.3% accuracy" comes from); k-fold tables; and every failed or missing job.

The statistics and the report are generic (``ser.analysis``); the loss question is one story
(``ser.analysis.loss_claim``) handed to them.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from ser.analysis import stats, words
from ser.analysis.keys import varied_keys
from ser.analysis.loss_claim import LossClaim
from ser.analysis.render import MAX_LISTED, problem_line, summary_text, write_outputs
from ser.analysis.stats import PAIRING_KEYS, Comparison
from ser.results import SCALARS
from ser.sweeps import Job, load_sweep, load_sweeps

__all__ = ["CompareError", "Comparison", "Job", "analyze", "compare", "load_sweep", "main", "verdict"]

STORY = LossClaim()


class AblationContrast(stats.Contrast):
    """A sweep over the ablation group (conf/ablation/): each change against the recipe as it is."""

    def name(self, level: str) -> str:
        return "the unchanged recipe" if level == self.baseline else f"`ablation={level}`"


ABLATION = AblationContrast(key="ablation", baseline="none", noun="ablation", plural="ablations")


def analyze(
    jobs: Sequence[Job],
    metric: str = "uar",
    alpha: float = 0.05,
    group_by: Sequence[str] | None = None,
    pair_by: Sequence[str] | None = None,
    sweep_dir: str | Path = ".",
) -> Comparison:
    """The statistics of loaded jobs with the losses as the contrast, or the ablations where no loss varied."""
    varied = varied_keys(jobs)
    contrast = ABLATION if ABLATION.key in varied and STORY.contrast.key not in varied else STORY.contrast
    return stats.analyze(jobs, metric, alpha, group_by, pair_by, sweep_dir, contrast=contrast)


def verdict(comp: Comparison) -> str:
    """The plain-words verdict, closed by the binary_accuracy statement."""
    return words.verdict(comp, STORY.verdict_extra(comp))


class CompareError(Exception):
    """Nothing to compare; ``jobs`` holds what was found, for the message."""

    def __init__(self, message: str, jobs: Sequence[Job] = ()) -> None:
        super().__init__(message)
        self.jobs = list(jobs)


def parse_exclusions(items: Sequence[str]) -> dict[str, set[str]]:
    """``["ablation=stride8,stride8_narrow", "split.fold=4"]`` -> {key: values}; CompareError on a bad item."""
    excluded: dict[str, set[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise CompareError(f"--exclude {item!r}: write KEY=VALUE[,VALUE...], e.g. --exclude ablation=stride8")
        excluded.setdefault(key.strip(), set()).update(v.strip() for v in values.split(",") if v.strip())
    return excluded


def exclude_jobs(jobs: Sequence[Job], excluded: Mapping[str, set[str]]) -> list[Job]:
    """The jobs whose value of no excluded key is one of its excluded values; CompareError for a value no job has."""
    for key, values in excluded.items():
        found = {str(j.params[key]) for j in jobs if key in j.params}
        if values - found:
            have = ", ".join(sorted(found)) or "none: no job set it"
            raise CompareError(
                f"--exclude {key}={','.join(sorted(values - found))}: no job ran that (values of {key}: {have})"
            )
    return [j for j in jobs if not any(k in j.params and str(j.params[k]) in v for k, v in excluded.items())]


def compare(
    sweep_dir: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    metric: str = "uar",
    alpha: float = 0.05,
    group_by: Sequence[str] | None = None,
    pair_by: Sequence[str] | None = None,
    plots: bool = True,
    exclude: Mapping[str, set[str]] | None = None,
) -> Comparison:
    """Load, analyze and write the report of one sweep, or of several as one; CompareError when no job completed.

    Several sweeps (e.g. one per architecture, over the same folds) are compared as one set of runs;
    the report then needs ``out``. ``exclude`` leaves out the runs with those values (``{"ablation": {"stride8"}}``),
    e.g. the other arms of an ablation sweep whose baseline runs a loss comparison reuses.
    """
    dirs = [Path(sweep_dir)] if isinstance(sweep_dir, (str, Path)) else [Path(d) for d in sweep_dir]
    if not dirs:
        raise CompareError("no sweep folder given")
    for folder in dirs:
        if not folder.is_dir():
            raise CompareError(f"no completed job in {folder}: no such folder")
    if len(dirs) > 1 and out is None:
        raise CompareError(f"{len(dirs)} sweeps compared as one: say where the report goes with --out DIR")
    jobs = load_sweeps(dirs)
    if exclude:
        jobs = exclude_jobs(jobs, exclude)
    where = ", ".join(map(str, dirs))
    if not any(j.status == "ok" for j in jobs):
        found = f"{len(jobs)} job(s), none completed" if jobs else "no numbered job folders"
        raise CompareError(f"no completed job in {where} ({found})", jobs)
    comp = analyze(jobs, metric, alpha, group_by, pair_by, dirs[0])
    if len(dirs) > 1:
        comp.sources = dirs
    write_outputs(comp, out if out is not None else dirs[0], plots=plots, story=STORY)
    return comp


def _yaml_mapping(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def sweep_task(sweep_dir: Path) -> str | None:
    """The task_name a sweep ran (``multirun.yaml``, else its first job's config), or None."""
    for path in (sweep_dir / "multirun.yaml", *sorted(sweep_dir.glob("[0-9]*/.hydra/config.yaml"))[:1]):
        task = _yaml_mapping(path).get("task_name")
        if task:
            return str(task)
    return None


def latest_sweep(root: str | Path, task: str) -> Path:
    """The newest sweep folder under ``root`` (named by time, as Hydra names them) whose jobs ran ``task_name=task``."""
    root = Path(root)
    sweeps = sorted((p for p in root.glob("*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    for sweep in sweeps:
        if sweep_task(sweep) == task:
            return sweep
    found = ", ".join(sorted({t for t in map(sweep_task, sweeps) if t})) or "none"
    preset = Path(__file__).resolve().parent.parent / "conf" / "experiment" / f"{task}.yaml"
    run_one = f"python -m ser.train -m experiment={task}" if preset.is_file() else "python -m ser.train -m ..."
    demo = root.parent / "demo" / root.name
    elsewhere = f"; sweeps on data=demo are under {demo} (--root {demo})" if demo.is_dir() and demo != root else ""
    raise CompareError(
        f"no sweep of task_name={task} under {root} (tasks found: {found}){elsewhere}; run one first, e.g. "
        f"{run_one}, or name the folder: python -m ser.compare {root}/<time>/"
    )


def _keys(text: str | None) -> list[str] | None:
    return None if text is None else [k.strip() for k in text.split(",") if k.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ser.compare",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent(
            """\
            Compare the runs of a Hydra sweep (python -m ser.train -m ...): per-group mean, sd and 95% CI of
            every test metric, paired differences between the losses over the same seeds/folds (paired t and
            Wilcoxon tests), a plain-words verdict, warnings (runs still improving at their last epoch, too few
            runs for a test to mean much), figures, and every failed or missing job. Writes comparison.md,
            comparison.csv and compare_*.png into the sweep folder (or --out)."""
        ),
        epilog=textwrap.dedent(
            """\
            examples:
              python -m ser.compare outputs/multirun/2025-01-31_12-00-00/
              python -m ser.compare --latest loss_comparison          # what `make compare` runs
              python -m ser.compare outputs/multirun/<time>/ --metric macro_f1 --no-plots
              python -m ser.compare outputs/multirun/<time>/ --group-by model --pair-by seed,split.fold
              python -m ser.compare outputs/multirun/<lstm>/ outputs/multirun/<crnn>/ --out docs/results/<name>
              python -m ser.compare <sweep> <other sweep> --exclude ablation=stride8,stride8_narrow --out <dir>"""
        ),
    )
    parser.add_argument(
        "sweep_dir",
        type=Path,
        nargs="*",
        help="a sweep folder (outputs/multirun/<time>/), or several compared as one (with --out)",
    )
    parser.add_argument(
        "--latest",
        metavar="TASK",
        default=None,
        help="instead of a folder: the newest sweep under --root whose jobs ran task_name=TASK (e.g. loss_comparison)",
    )
    parser.add_argument(
        "--root", type=Path, default=Path("outputs/multirun"), help="where --latest looks (default: outputs/multirun)"
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the sweep folder)")
    parser.add_argument("--metric", default="uar", choices=SCALARS, help="headline metric of the verdict")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    parser.add_argument(
        "--group-by",
        default=None,
        help="comma-separated keys to group by (default: every varied key except seed/fold)",
    )
    parser.add_argument(
        "--pair-by", default=None, help=f"comma-separated repetition keys (default: {','.join(PAIRING_KEYS)})"
    )
    parser.add_argument(
        "--exclude",
        metavar="KEY=VALUE[,VALUE]",
        action="append",
        default=[],
        help="leave out the runs with these values (repeatable), e.g. --exclude ablation=stride8,stride8_narrow",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    args = parser.parse_args(argv)
    if bool(args.sweep_dir) == (args.latest is not None):
        parser.error("give a sweep folder or --latest TASK (one of them)")
    try:
        if args.latest is not None:
            args.sweep_dir = [latest_sweep(args.root, args.latest)]
        comp = compare(
            args.sweep_dir,
            args.out,
            args.metric,
            args.alpha,
            _keys(args.group_by),
            _keys(args.pair_by),
            plots=not args.no_plots,
            exclude=parse_exclusions(args.exclude),
        )
    except CompareError as exc:
        print(f"ser.compare: {exc}", file=sys.stderr)
        for job in exc.jobs[:MAX_LISTED]:
            print(problem_line(job), file=sys.stderr)
        return 1
    print(summary_text(comp, STORY))
    print(f"  wrote {(args.out or args.sweep_dir[0]) / 'comparison.md'}")
    return 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
