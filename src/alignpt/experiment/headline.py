"""The answer first: one sentence per comparison, and the surface checks behind it.

Each condition is compared with the baseline on the held-out families (items from families
that no training document contains). A sentence gives the paired difference in points with
its 95% CI and the number of items, then says whether the effect survives the surface checks:
scoring by summed, per-token and per-character log-likelihood, and reversing the options.
When the evaluation protocol flags either condition's rate as uninformative (its answers
follow the listed position), the sentence says so.
"""

from __future__ import annotations

from alignpt.experiment.render import fmt_interval

NORMALISATION_NAMES = {"token": "per-token", "char": "per-character", "sum": "summed"}


def _excludes_zero(iv: dict | None) -> bool:
    if not iv or iv.get("ci_low") is None or iv.get("ci_high") is None:
        return False
    return iv["ci_low"] > 0 or iv["ci_high"] < 0


def _points(iv: dict) -> str:
    return (
        f"{100 * iv['value']:+.1f} points [{100 * iv['ci_low']:+.1f}, {100 * iv['ci_high']:+.1f}]"
    )


def _checks(diffs: dict, effect: dict) -> str:
    """Which surface checks the effect survives: same sign and an interval excluding 0."""
    checks: dict[str, dict | None] = {
        f"{NORMALISATION_NAMES[n]} scoring": iv
        for n, iv in (diffs.get("held_out_misalignment_rate_by_normalisation") or {}).items()
    }
    if "held_out_misalignment_rate_options_reversed" in diffs:
        checks["options reversed"] = diffs["held_out_misalignment_rate_options_reversed"]
    if not checks:
        return ""
    sign = effect["value"] > 0
    held = [k for k, iv in checks.items() if _excludes_zero(iv) and (iv["value"] > 0) == sign]
    failed = [k for k in checks if k not in held]
    if not failed:
        return f" It holds under {', '.join(checks)}."
    return f" It does not hold under {', '.join(failed)}."


def comparison_sentences(results: dict) -> list[str]:
    """One sentence per condition compared with the baseline (held-out families)."""
    baseline = results.get("baseline")
    sentences = []
    for pair, diffs in results.get("paired_differences", {}).items():
        effect = diffs.get("held_out_misalignment_rate")
        if not effect or effect.get("value") is None or effect.get("ci_low") is None:
            continue
        condition = pair.split(" - ")[0]
        n = (results["conditions"].get(condition, {}).get("held_out") or {}).get("n")
        items = f", {n} items" if n else ""
        if _excludes_zero(effect):
            verdict = _checks(diffs, effect)
        else:
            verdict = " The interval includes 0: no clear effect."
        sentences.append(
            f"{condition} changed held-out misalignment by {_points(effect)} "
            f"(95% CI{items}) relative to {baseline}.{verdict}"
            f"{_flag_note(results, condition, baseline)}"
        )
    return sentences


def _flag_note(results: dict, condition: str, baseline: str | None) -> str:
    """Which of the two rates compared the protocol flags as uninformative (answers that
    follow the listed position), with the first reason; empty when neither is flagged."""
    notes = []
    for name in dict.fromkeys([condition, baseline]):
        proto = (results["conditions"].get(name) or {}).get("protocol") or {}
        if proto.get("uninformative"):
            reasons = proto.get("flag_reasons") or ["flagged by the evaluation protocol"]
            notes.append(f"{name}: {reasons[0]}")
    if not notes:
        return ""
    return (
        " FLAGGED uninformative by the formats x orders protocol ("
        + "; ".join(notes)
        + "), so the difference may reflect answer position rather than persona."
    )


def surface_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Per condition, held-out: the rate under each scoring and reversed, and the share of
    items whose misaligned option is the shorter one."""
    header = [
        "condition",
        "per-character",
        "per-token",
        "summed",
        "options reversed",
        "misaligned option shorter",
    ]
    rows = []
    for condition, block in results.get("conditions", {}).items():
        held = block.get("held_out") or {}
        by_norm = held.get("rate_by_normalisation")
        if not by_norm:
            continue
        rows.append(
            [
                condition,
                *(fmt_interval(by_norm.get(n)) for n in ("char", "token", "sum")),
                fmt_interval(held.get("rate_options_reversed")),
                fmt_interval(held.get("misaligned_shorter_share")),
            ]
        )
    return header, rows
