"""The data report: what went in (clips per corpus x class, speakers, hours) and what was left out."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from ser import labels
from ser.data.corpus import Clip, Exclusion


def build_report(
    clips: Sequence[Clip], excluded: Sequence[Exclusion], seconds: Sequence[float], roots: dict[str, str]
) -> dict:
    """A JSON-able summary of the clips used (with their durations in seconds) and all exclusions."""
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
    if report["excluded"]:
        lines.append("")
        lines.append(f"Excluded files ({len(report['excluded'])}):")
        lines.extend(f"  {e['path']}: {e['reason']}" for e in report["excluded"][:50])
        if len(report["excluded"]) > 50:
            lines.append(f"  ... and {len(report['excluded']) - 50} more (see data_report.json)")
    return "\n".join(lines)


def save_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, txt = out / "data_report.json", out / "data_report.txt"
    js.write_text(json.dumps(report, indent=2))
    txt.write_text(format_report(report) + "\n")
    return js, txt
