"""Score checkpoints on any corpus set: ``python -m ser.eval ckpt=<file|[list]|run or sweep folder> data=<set>``.

Data flow: checkpoints (:mod:`ser.models.ensemble`) -> the corpus index of ``data`` -> which speakers
each member may score (its checkpoint records the speakers it trained and validated on) -> each
member's own features from the content-keyed cache (training's entry when the data are the same) and
its own normalization -> probabilities, averaged over the members that score a clip -> the metrics that
apply (:mod:`ser.scoring`) -> outputs/eval/<time>/: metrics.json (training's test schema plus an
``eval`` section), confusion matrices, per-speaker and per-corpus tables, predictions.csv, TensorBoard.

Speakers: by default every speaker of the data that no member trained or validated on (a checkpoint
evaluated on its own corpora is so scored on its run's test speakers; a k-fold sweep folder scores
each speaker with the fold that tested it: cross-validation predictions). ``speakers=[...]`` picks
speakers; one that a checkpoint has seen is refused unless ``allow_overlap=true`` (then every member
scores every clip and the overlap is flagged in the report).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from ser.analysis.evaluation import summary_text, write_outputs
from ser.config import to_plain
from ser.data.batching import collate
from ser.data.corpus import Clip, DataError
from ser.data.datamodule import SERDataModule
from ser.data.splits import SplitSpec
from ser.environment import run_environment
from ser.inference.predictor import resolve_device
from ser.logs import show_bars
from ser.models.checkpoint import CheckpointError, RebuiltModel
from ser.models.ensemble import held_out_members, load_members, seen_speakers, tested_speakers
from ser.results import run_record
from ser.runs import is_multirun
from ser.runtime import configure_matmul_precision, configure_threads, mark_failed, run_command
from ser.scoring import score, truth

log = logging.getLogger("ser.eval")

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
EXIT_USAGE = 2
PROTOCOLS = {
    "single": "one checkpoint",
    "ensemble": "mean probabilities of all members on every clip",
    "cross_validation": "each speaker scored by the one member that did not train or validate on it "
    "(in a k-fold sweep: the fold that tested it): cross-validation predictions, not an ensemble",
    "held_out": "each speaker scored by the mean probabilities of the members that did not train or validate on it",
}


class EvalError(ValueError):
    """Checkpoints and data that cannot be scored as asked; a one-line message, exit code 2."""


@dataclass
class Plan:
    """Which speakers are scored, by which members (indices), and why."""

    speakers: list[str]
    scorers: dict[str, list[int]]
    protocol: str
    source: str  # where the speaker list came from, in words
    dropped: list[str] = field(default_factory=list)  # speakers left out: seen in training by every member
    overlap: list[str] = field(default_factory=list)  # scored speakers that a scoring member has seen


def match_speakers(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """``speakers=`` entries as speakers of the data: exact (``crema_d/1001``) or the part after the corpus."""
    out = []
    for name in (str(s) for s in requested):
        found = [s for s in available if s == name] or [s for s in available if s.split("/", 1)[-1] == name]
        if not found:
            raise EvalError(f"speakers: {name!r} is not a speaker of the data (e.g. {', '.join(available[:6])})")
        if len(found) > 1:
            raise EvalError(f"speakers: {name!r} is ambiguous ({', '.join(found)}); give the corpus/speaker form")
        if found[0] not in out:
            out.append(found[0])
    return out


def plan_speakers(
    members: Sequence[RebuiltModel], available: Sequence[str], requested: Sequence[str] | None, allow_overlap: bool
) -> Plan:
    """Which members score which speakers; refuses (EvalError) to score a speaker on a model that has seen it."""
    k = len(members)
    chosen = match_speakers(requested, available) if requested else list(available)
    held = held_out_members(members, chosen)
    if allow_overlap:
        overlap = [s for s in chosen if len(held[s]) < k]
        source = "given (speakers=)" if requested else "every speaker of the data (allow_overlap=true)"
        everyone = {s: list(range(k)) for s in chosen}
        return Plan(chosen, everyone, protocol_of(k, everyone), source, overlap=overlap)
    unknown = [m.source for m in members if seen_speakers(m) is None]
    if unknown:
        raise EvalError(
            f"{unknown[0]}: the checkpoint does not record the speakers it was trained on, so overlap with the "
            "evaluated speakers cannot be ruled out; give allow_overlap=true to score it anyway"
        )
    seen = [s for s in chosen if not held[s]]
    who = "the checkpoint" if k == 1 else "every member"
    if requested and seen:
        raise EvalError(
            f"speakers {', '.join(seen[:5])}{' ...' if len(seen) > 5 else ''}: {who} trained or validated on "
            f"{'it' if len(seen) == 1 else 'them'}; give allow_overlap=true to score anyway (flagged in the report)"
        )
    speakers = [s for s in chosen if held[s]]
    if not speakers:
        raise EvalError(
            f"every speaker of the data was used to train or validate {who}: nothing unseen to score; "
            "evaluate other corpora or give allow_overlap=true"
        )
    scorers = {s: held[s] for s in speakers}
    if requested:
        source = "given (speakers=)"
    elif seen:
        source = "every speaker of the data that the checkpoint(s) did not train or validate on"
    else:
        source = "every speaker of the data"
    return Plan(speakers, scorers, protocol_of(k, scorers), source, dropped=seen)


def protocol_of(k: int, scorers: Mapping[str, Sequence[int]]) -> str:
    """single | ensemble (all members score every speaker) | cross_validation (one held-out member each) | held_out."""
    if k == 1:
        return "single"
    if all(len(v) == k for v in scorers.values()):
        return "ensemble"
    return "cross_validation" if all(len(v) == 1 for v in scorers.values()) else "held_out"


def settle(plan: Plan, members: Sequence[RebuiltModel], scored: set[str]) -> None:
    """Keep the speakers that have a scored clip (a speaker whose only clip is silent has none) and say so
    when they are exactly the test speakers of the run that trained the one checkpoint."""
    plan.speakers = [s for s in plan.speakers if s in scored]
    plan.overlap = [s for s in plan.overlap if s in scored]
    plan.scorers = {s: plan.scorers[s] for s in plan.speakers}
    plan.protocol = protocol_of(len(members), plan.scorers)
    if (
        plan.source.startswith("every speaker")
        and len(members) == 1
        and set(plan.speakers) == tested_speakers(members[0])
    ):
        plan.source = "the test speakers of the run that trained the checkpoint"


# ---------------------------------------------------------------------------------------- scoring


def member_probabilities(
    member: RebuiltModel, dm: SERDataModule, all_clips: Sequence[Clip], clips: Sequence[Clip], device: torch.device
) -> tuple[np.ndarray, dict[str, str], np.ndarray]:
    """Probabilities [len(clips), C] of one member (NaN rows for clips it has no features of), why those
    clips have none, and each clip's seconds of audio.

    The DataModule's own test path, with the member's features and normalization: the cache entry of
    all the data's clips (training's entry when the data are the same), speaker statistics over all of a
    speaker's clips, the same crop and length-sorted batches; so a checkpoint scored on its own test
    speakers gets its training run's test numbers.
    """
    fs = dm.feature_cache().load_or_build(list(all_clips))
    row = {cid: i for i, cid in enumerate(fs.clip_ids)}
    reasons = {e.path: e.reason for e in fs.excluded}
    missing = {c.clip_id: reasons.get(c.path, "no features") for c in clips if c.clip_id not in row}
    kept = [i for i, c in enumerate(clips) if c.clip_id in row]
    ds = dm.evaluation_set(fs, all_clips, [clips[i] for i in kept])
    loader = dm.test_dataloader()
    out = np.full((len(clips), len(member.classes)), np.nan, dtype=np.float32)
    net = member.net.eval().to(device)
    with torch.inference_mode():
        for idx in loader.batch_sampler:
            batch = collate([ds[i] for i in idx]).to(device)
            probs = member.loss.probabilities(net(batch.features, batch.lengths)).float().cpu().numpy()
            out[[kept[i] for i in idx]] = probs
    seconds = np.zeros(len(clips))
    frames = np.asarray([int(fs.lengths[row[clips[i].clip_id]]) for i in kept], dtype=float)
    seconds[kept] = frames * int(member.extractor.hop_length) / member.sample_rate
    dm.feature_set, dm.datasets = None, {}  # one member's features at a time in memory
    return out, missing, seconds


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score the checkpoints of ``cfg.ckpt`` on ``cfg.data``; returns the record and what the report needs."""
    start = time.perf_counter()
    batch_size = cfg.get("batch_size")
    positive = isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0
    if batch_size is not None and not positive:
        raise EvalError(f"batch_size={batch_size!r}: must be a positive integer (or null: data.batch_size)")
    members = load_members(to_plain(cfg.ckpt))
    data = dict(to_plain(cfg.data))
    data["batch_size"] = int(batch_size or data["batch_size"])
    # Bars on a terminal only (progress=auto), as in ser.train: a redirected log gets no bar redraws.
    data["progress"] = show_bars(data.get("progress", "auto")) and show_bars(cfg.get("progress"))
    device = resolve_device(cfg.get("device", "cpu"))
    # Each member's features and normalization; the data group only says which clips to read.
    modules = [
        SERDataModule.from_config(
            {**data, "normalization": m.normalization}, SplitSpec(), m.config["features"], m.extractor
        )
        for m in members
    ]
    try:
        index = modules[0].corpora.index(progress=bool(data.get("progress", True)))
    except DataError as exc:
        raise DataError(f"{exc}{demo_hint(members, data)}") from exc
    available = index.speakers()
    requested = to_plain(cfg.get("speakers"))
    if isinstance(requested, str):
        requested = [requested]
    plan = plan_speakers(members, available, requested, bool(cfg.get("allow_overlap", False)))
    chosen = set(plan.speakers)
    clips = [c for c in index.clips if c.speaker in chosen]
    total = np.zeros((len(clips), len(members[0].classes)), dtype=np.float64)
    count = np.zeros(len(clips), dtype=np.int64)
    seconds = np.zeros(len(clips))
    missing: dict[str, str] = {}
    for i, (member, dm) in enumerate(zip(members, modules, strict=True)):
        mine = [j for j, c in enumerate(clips) if i in plan.scorers[c.speaker]]
        log.info("member %d/%d: %s scores %d clips", i + 1, len(members), member.source, len(mine))
        probs, lacking, secs = member_probabilities(member, dm, index.clips, [clips[j] for j in mine], device)
        seconds[mine] = secs
        missing.update(lacking)
        total[mine] += np.nan_to_num(probs)
        count[mine] += 1
    keep = [j for j, c in enumerate(clips) if c.clip_id not in missing]
    if not keep:
        raise EvalError("no clip left to score: every evaluated clip lacks features (see the data report)")
    clips = [clips[j] for j in keep]
    settle(plan, members, {c.speaker for c in clips})
    probs = (total[keep] / count[keep, None]).astype(np.float32)
    seen = [seen_speakers(m) for m in members]  # None: not recorded, so possibly anyone
    overlap = np.array([any(seen[i] is None or c.speaker in seen[i] for i in plan.scorers[c.speaker]) for c in clips])
    scores = score(probs, *truth(clips))
    excluded: dict[str, int] = {}
    for e in index.excluded:
        excluded[e.reason] = excluded.get(e.reason, 0) + 1
    for reason in missing.values():
        excluded[reason] = excluded.get(reason, 0) + 1
    hours = float(seconds[keep].sum()) / 3600
    corpora = list(modules[0].corpora.names)  # data.corpora=[all] expanded to what was found
    wall = time.perf_counter() - start
    record = build_record(cfg, members, plan, corpora, clips, scores, excluded, hours, wall, run_environment(device))
    record["eval"]["overlap"]["clips"] = int(overlap.sum())
    return {"record": record, "clips": clips, "probs": probs, "members": count[keep], "overlap": overlap}


def demo_hint(members: Sequence[RebuiltModel], data: Mapping[str, Any]) -> str:
    """A pointer to data=demo when the checkpoints were trained on the built-in demo corpus and the data are not."""
    trained = {tuple((m.data or {}).get("corpora") or ()) for m in members}
    corpora = data.get("corpora") or ()
    if trained == {("demo",)} and ([corpora] if isinstance(corpora, str) else list(corpora)) != ["demo"]:
        return "; these checkpoints were trained on the built-in demo corpus: add data=demo to score them on it"
    return ""


def build_record(cfg, members, plan, corpora, clips, scores, excluded, hours, wall, environment) -> dict[str, Any]:
    """metrics.json: training's test-stage schema (ser.results.run_record) plus what the evaluation was."""
    single = members[0].data if len(members) == 1 and isinstance(members[0].data, Mapping) else {}
    loss = ",".join(sorted({str(m.loss.name) for m in members}))
    record = run_record(
        test=scores.metrics,
        best_val=None,
        loss=loss,
        seed=single.get("seed"),
        split="eval",
        fold=single.get("fold"),
        data={
            "corpora": corpora,
            "split": "eval",
            "speaker_independent": not plan.overlap,
            "clips": {"test": len(clips)},
            "speakers": {"test": len(plan.speakers)},
            "hours": round(hours, 4),
            "excluded": sum(excluded.values()),
        },
        epochs=None,  # type: ignore[arg-type]  (nothing was trained here)
        epoch_time_s=None,
        wall_time_s=wall,
        best_checkpoint=", ".join(m.source for m in members),
        environment=environment,
    )
    record["emotion_uar"] = scores.metrics["emotion_uar"]
    record["emotion_confusion"] = scores.metrics["emotion_confusion"]
    record["eval"] = {
        "protocol": plan.protocol,
        "protocol_text": PROTOCOLS[plan.protocol],
        "checkpoints": [m.source for m in members],
        "members": [_member_summary(m) for m in members],
        "speakers": plan.speakers,
        "speakers_from": plan.source,
        "speakers_dropped": plan.dropped,
        "overlap": {"allowed": bool(cfg.get("allow_overlap", False)), "speakers": plan.overlap},
        "skipped": scores.skipped,
        "scope": scores.scope,
        "excluded": {"total": sum(excluded.values()), "by_reason": dict(sorted(excluded.items()))},
    }
    return record


def _features_name(features: Mapping[str, Any]) -> str:
    """``LogMel``, or ``Stacked(logmel+egemaps)`` for views side by side."""
    name = str(features.get("_target_", "")).rsplit(".", 1)[-1]
    views = features.get("views")
    return f"{name}({'+'.join(views)})" if isinstance(views, Mapping) else name


def _member_summary(m: RebuiltModel) -> dict[str, Any]:
    record = m.data if isinstance(m.data, Mapping) else {}
    return {
        "checkpoint": m.source,
        "features": _features_name(m.config["features"]),
        "normalization": m.normalization,
        "model": str(m.config["model"].get("_target_", "")).rsplit(".", 1)[-1],
        **{k: record.get(k) for k in ("corpora", "split", "seed", "fold")},
    }


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate and write every output into ``paths.output_dir``; returns the metrics.json record."""
    configure_threads(cfg)
    configure_matmul_precision(cfg)
    result = evaluate(cfg)
    out_dir = Path(cfg.paths.output_dir)
    write_outputs(out_dir, result["record"], result["clips"], result["probs"], result["members"], result["overlap"])
    return result["record"]


def _error(message: str) -> None:
    print(f"ser.eval: {message}", file=sys.stderr)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    """``python -m ser.eval ckpt=... data=... [speakers=[...]] [allow_overlap=true]``."""
    try:
        record = run(cfg)
    except (EvalError, CheckpointError, DataError) as exc:
        if is_multirun():  # a sweep's job folder stays: its log says why (on the console once, below)
            log.error("%s", exc)
        _error(str(exc))
        mark_failed(cfg.paths.output_dir)  # a single run's folder holding only its log goes
        sys.exit(EXIT_USAGE)
    except ValueError as exc:  # e.g. device=cuda without a GPU
        _error(f"error: {exc}")
        mark_failed(cfg.paths.output_dir)
        sys.exit(EXIT_USAGE)
    print(summary_text(record, Path(cfg.paths.output_dir)))


def cli() -> None:
    """``python -m ser.eval`` / ``ser-eval``: a mistake in the command line is one line and exit code 2."""
    run_command(main, "ser.eval", CONFIG_DIR, "eval")


if __name__ == "__main__":
    cli()
