"""Numbers and verdicts in words: number formats and the plain-words verdict of a comparison."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ser.analysis.stats import Comparison, Paired, Summary, min_wilcoxon_p
from ser.results import display_name


def fmt(x: float | None, digits: int = 4) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def p_is(p: float) -> str:
    """'p = 0.0123' or 'p < 0.0001', for sentences."""
    text = fmt_p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def fmt_ci(s: Summary) -> str:
    return f"[{fmt(s.ci_low)}, {fmt(s.ci_high)}]" if math.isfinite(s.ci_low) else "–"


def _pairs_word(comp: Comparison, n: int, stratum: str = "all") -> str:
    # Within a setting ("model=crnn") its keys are fixed: the pairs are over the remaining ones.
    fixed = {part.split("=", 1)[0] for part in stratum.split(", ")} if stratum != "all" else set()
    keys = [k for k in comp.match_keys if k not in fixed]
    if not keys:
        return f"{n} pair{'s' if n != 1 else ''}"
    unit = "/".join(k.split(".")[-1] for k in keys)
    return f"{n} paired {unit}{'s' if n != 1 else ''}"


def verdict(comp: Comparison, extra: Sequence[str] = ()) -> str:
    """One paragraph in plain words: which is better on the headline metric, by how much, how sure.

    ``extra`` sentences (a story's own, e.g. the loss claim's binary_accuracy line) close the paragraph.
    """
    name, out = display_name(comp.metric), []
    for r in comp.paired_result(comp.metric):
        out.extend(_pair_sentences(comp, r))
    out.extend(_strata_sentences(comp))
    if comp.contrast is None and comp.groups:
        ranked = sorted(comp.groups, key=lambda g: -np.nan_to_num(g.stats[comp.metric].mean, nan=-1))
        best, worst = ranked[0], ranked[-1]
        if len(ranked) > 1:
            out.append(
                f"No paired comparison is possible here; best on test {name}: `{best.label}` "
                f"({fmt(best.stats[comp.metric].mean, 3)}, n={best.stats[comp.metric].n}), worst: "
                f"`{worst.label}` ({fmt(worst.stats[comp.metric].mean, 3)}, "
                f"n={worst.stats[comp.metric].n})."
            )
        else:
            out.append(
                f"A single setting: test {name} {fmt(best.stats[comp.metric].mean, 3)} "
                f"(n={best.stats[comp.metric].n}); nothing to compare."
            )
    if comp.kfold:
        out.append(
            "Folds share most of their training data, so fold results are not independent and "
            "the p-values and CIs are optimistic."
        )
    out.extend(extra)
    return " ".join(s for s in out if s)


def _pair_sentences(comp: Comparison, r: Paired) -> list[str]:
    """Which of a pair of levels is better on the headline metric, by how much, and how sure."""
    name = display_name(comp.metric)
    a_name, b_name = comp.level_name(r.a), comp.level_name(r.b)
    if r.n == 0:
        over = ", ".join(comp.match_keys) or "settings"
        return [
            f"No {r.a}/{r.b} runs over the same {over} both completed, so "
            f"{a_name} and {b_name} cannot be compared pairwise."
        ]
    d = r.diff.mean
    if d == 0:
        pairs = _pairs_word(comp, r.n, r.stratum)
        first = f"On test {name}, {a_name} and {b_name} tie ({fmt(r.mean_a, 3)}) over {pairs}."
    else:
        better, worse = (r.b, r.a) if d > 0 else (r.a, r.b)
        ahead = r.b_ahead if d > 0 else r.a_ahead
        ci = f" (95% CI {r.diff.ci_low:+.3f} to {r.diff.ci_high:+.3f})" if r.n >= 2 else ""
        # "Better" only with some test behind it; otherwise say just what was measured.
        significant = min(np.nan_to_num([r.t_p, r.wilcoxon_p], nan=1.0)) < comp.alpha
        better_name = comp.level_name(better)
        claim = f"**{better_name} is better**" if significant else f"{better_name} scores higher"
        first = (
            f"On test {name}, {claim} than {comp.level_name(worse)}: "
            f"{fmt(max(r.mean_a, r.mean_b), 3)} vs {fmt(min(r.mean_a, r.mean_b), 3)}, a paired difference "
            f"({r.b} − {r.a}) of {d:+.3f}{ci} over {_pairs_word(comp, r.n, r.stratum)}, ahead in {ahead} of {r.n}."
        )
    return [first, _significance(comp, r)]


def stratum_verdicts(comp: Comparison) -> list[tuple[str, str]]:
    """(setting, verdict) for each setting of the other grouping keys (each model of a loss comparison).

    The pooled verdict averages over those settings; a reader asking "which loss, for this network?"
    needs the answer within each.
    """
    strata = [st for st in dict.fromkeys(p.stratum for p in comp.paired) if st != "all"]
    out = []
    for stratum in strata:
        sentences = [s for r in comp.paired_result(comp.metric, stratum) for s in _pair_sentences(comp, r)]
        if sentences:
            out.append((stratum, " ".join(sentences)))
    return out


def _significance(comp: Comparison, r: Paired) -> str:
    if r.n < 2:
        return "With a single pair no test is possible; run more seeds."
    t_sig, w_sig = r.t_p < comp.alpha, r.wilcoxon_p < comp.alpha
    tests = f"paired t {p_is(r.t_p)}, Wilcoxon {p_is(r.wilcoxon_p)}"
    if t_sig and w_sig:
        text = f"The difference is significant at {comp.alpha:g} ({tests})."
    elif t_sig:
        text = (
            f"The difference is significant at {comp.alpha:g} by the paired t-test but not by the "
            f"Wilcoxon signed-rank test ({tests})."
        )
    elif w_sig:
        text = (
            f"The difference is significant at {comp.alpha:g} by the Wilcoxon signed-rank test but not "
            f"by the paired t-test ({tests})."
        )
    else:
        text = f"The difference is not significant at {comp.alpha:g} ({tests}): these runs cannot tell the two apart."
    if min_wilcoxon_p(r.n) >= comp.alpha:
        text += (
            f" With only {r.n} pairs the Wilcoxon test cannot reach p < {comp.alpha:g} at all (its "
            f"smallest two-sided p is 2/2^{r.n} = {min_wilcoxon_p(r.n):.4f}); "
            "at least 6 pairs are needed."
        )
    elif r.n < 10:
        text += f" With {r.n} pairs, treat this as indicative."
    return text


def _strata_sentences(comp: Comparison) -> list[str]:
    strata = [st for st in dict.fromkeys(p.stratum for p in comp.paired) if st != "all"]
    parts = []
    for stratum in strata:
        for r in comp.paired_result(comp.metric, stratum):
            if r.n:  # a setting run with one side only has nothing to pair; its section says so
                parts.append(f"{stratum}: {r.b} − {r.a} = {r.diff.mean:+.3f} (n={r.n}, t {p_is(r.t_p)})")
    return [f"Within each setting: {'; '.join(parts)}."] if parts else []
