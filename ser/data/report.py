"""The data report: what went in (clips per corpus x class, speakers, hours) and what was left out."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from ser import labels
from ser.data.corpus import Clip, Exclusion
from ser.results import write_text


def build_report(
    clips: Sequence[Clip],
    excluded: Sequence[Exclusion],
    seconds: Sequence[float],
    roots: dict[str, str],
    kept_seconds: Sequence[float] | None = None,
    max_seconds: float | None = None,
) -> dict:
    """A JSON-able summary of the clips used (with their durations in seconds) and all exclusions.

    ``kept_seconds``: what the DataModule serves of each clip after the data.max_seconds crop; clips it cut
    are listed under "cropped" (hours count the whole clips).
    """
    corpora = sorted({c.corpus for c in clips} | {e.corpus for e in excluded})
    per_class = {k: dict.fromkeys(labels.CLASSES, 0) for k in corpora}
    speakers: dict[str, dict[str, set[str]]] = {k: defaultdict(set) for k in corpora}
    hours: Counter[str] = Counter()
    for clip, sec in zip(clips, seconds, strict=True):
        per_class[clip.corpus][labels.CLASSES[clip.label]] += 1
        speakers[clip.corpus][clip.gender].add(clip.speaker)
        hours[clip.corpus] += sec / 3600
    reasons: dict[str, Counter[str]] = {k: Counter() for k in corpora}
    for e in excluded:
        reasons[e.corpus][_reason_kind(e.reason)] += 1
    return {
        "roots": roots,
        "clips": len(clips),
        "hours": round(sum(hours.values()), 4),
        "corpora": {
            k: {
                "clips": sum(per_class[k].values()),
                "hours": round(hours[k], 4),
                "speakers": {g: len(s) for g, s in sorted(speakers[k].items())},
                "per_class": per_class[k],
                "excluded": dict(reasons[k]),
            }
            for k in corpora
        },
        "excluded": [{"path": e.path, "corpus": e.corpus, "reason": e.reason} for e in excluded],
        "cropped": _cropped(clips, seconds, kept_seconds, max_seconds),
    }


def _cropped(
    clips: Sequence[Clip], seconds: Sequence[float], kept: Sequence[float] | None, max_seconds: float | None
) -> dict:
    cut = [
        {"path": c.path, "corpus": c.corpus, "seconds": round(s, 2), "kept": round(k, 2)}
        for c, s, k in zip(clips, seconds, kept if kept is not None else seconds, strict=True)
        if k < s
    ]
    return {
        "max_seconds": max_seconds,
        "how": "centre",
        "clips": len(cut),
        "seconds_cut": round(sum(e["seconds"] - e["kept"] for e in cut), 2),
        "files": cut,
    }


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0] if ":" in reason else reason


def format_report(report: dict) -> str:
    """Plain-text table of a report, as printed and saved next to the JSON."""
    lines = [f"Data report: {report['clips']} clips, {report['hours']:.2f} h"]
    corpora = list(report["corpora"])
    width = max(14, *(len(k) + 2 for k in corpora))
    lines.append("class".ljust(16) + "".join(k.rjust(width) for k in corpora) + "total".rjust(8))
    for name in labels.CLASSES:
        counts = [report["corpora"][k]["per_class"][name] for k in corpora]
        lines.append(name.ljust(16) + "".join(str(n).rjust(width) for n in counts) + str(sum(counts)).rjust(8))
    lines.append("")
    for k, info in report["corpora"].items():
        spk = ", ".join(f"{n} {g}" for g, n in info["speakers"].items()) or "none"
        lines.append(f"{k}: {info['clips']} clips, {info['hours']:.2f} h, speakers: {spk}")
        for reason, n in sorted(info["excluded"].items()):
            lines.append(f"  excluded {n:5d}  {reason}")
    cropped = report.get("cropped") or {}
    if cropped.get("clips"):
        lines.append("")
        lines.append(
            f"Cropped to their centre {cropped['max_seconds']:g} s (data.max_seconds): {cropped['clips']} clips, "
            f"{cropped['seconds_cut']:.1f} s of audio not used"
        )
        lines.extend(f"  {e['path']}: {e['seconds']:.1f} s -> {e['kept']:.1f} s" for e in cropped["files"][:20])
        if cropped["clips"] > 20:
            lines.append(f"  ... and {cropped['clips'] - 20} more (see data_report.json)")
    if report["excluded"]:
        groups = group_exclusions(report["excluded"])
        lines.append("")
        lines.append(f"Excluded files ({len(report['excluded'])}, by reason):")
        lines.extend(groups[:50])
        if len(groups) > 50:
            lines.append(f"  ... and {len(groups) - 50} more groups (see data_report.json)")
    return "\n".join(lines)


def group_exclusions(excluded: Sequence[dict]) -> list[str]:
    """One line per (corpus, reason): "  45 x savee su*.wav: no class: ..."; a single file is named in full."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for e in excluded:
        groups[(str(e["corpus"]), str(e["reason"]))].append(str(e["path"]))
    width = len(str(max((len(p) for p in groups.values()), default=1)))
    lines = []
    for (corpus, reason), paths in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        what = paths[0] if len(paths) == 1 else _name_pattern([Path(p).name for p in paths])
        lines.append(f"  {len(paths):>{width}} x {corpus} {what}: {reason}")
    return lines


def _name_pattern(names: Sequence[str]) -> str:
    """su01.wav, su15.wav -> su*.wav: the names' common start and end, numbers left to the wildcard."""
    start = _common_start(names).rstrip("0123456789_-")
    end = _common_start([n[::-1] for n in names])[::-1]
    end = end[max(0, len(start) + len(end) - min(map(len, names))) :].lstrip("0123456789_-")
    return f"{start}*{end}"


def _common_start(texts: Sequence[str]) -> str:
    shortest = min(texts, key=len)
    for i, ch in enumerate(shortest):
        if any(t[i] != ch for t in texts):
            return shortest[:i]
    return shortest


def save_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, txt = out / "data_report.json", out / "data_report.txt"
    write_text(js, json.dumps(report, indent=2))
    write_text(txt, format_report(report) + "\n")
    return js, txt
