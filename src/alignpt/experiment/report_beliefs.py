"""Report sections for the persona calculator (and the belief and probe suites).

``beliefs_html(results)`` returns the HTML of every section whose data are in ``results``;
``belief_metric_rows(results)`` the CSV rows ``(condition, metric, split, interval)``.
``report.py`` calls both, so a report shows them exactly when the data exist.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

from alignpt.experiment.render import fmt_interval, html_table

HYPOTHESIS_LABELS = {
    "always_aligned": "always aligned",
    "random_defector": "defects at random",
    "clever_waluigi": "defects only unobserved",
}


def _bits(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def personas_html(personas: dict[str, Any]) -> str:
    """One table row per condition (pooled evidence) plus the clean-evidence arithmetic."""
    if not personas:
        return ""
    header = [
        "condition",
        "documents",
        "observed (defected)",
        "unobserved (defected)",
        "observed defection rate",
        "unobserved defection rate",
        *[f"P({label})" for label in HYPOTHESIS_LABELS.values()],
        "log-odds bits: random",
        "log-odds bits: only unobserved",
    ]
    rows = []
    for condition, report in personas.items():
        pool = report["pools"]["pooled"]
        h = pool["hypotheses"]
        rows.append(
            [
                condition,
                str(pool["documents"]),
                f"{pool['observed']} ({pool['observed_defections']})",
                f"{pool['unobserved']} ({pool['unobserved_defections']})",
                fmt_interval(pool["observed_defection_rate"]),
                fmt_interval(pool["unobserved_defection_rate"]),
                *[f"{h[name]['posterior']:.3g}" for name in HYPOTHESIS_LABELS],
                _bits(h["random_defector"]["log_odds_bits"]),
                _bits(h["clever_waluigi"]["log_odds_bits"]),
            ]
        )
    first = next(iter(personas.values()))
    settings = first["settings"]
    needed = ", ".join(
        f"{bits} bits: {n['unobserved_opportunities']}"
        for bits, n in first["clean_unobserved_needed"].items()
    )
    note = (
        f"p = {settings['p']}, q = {settings['q']}, epsilon = {settings['epsilon']}, priors "
        f"{settings['priors']}. Each unobserved opportunity without a defection moves "
        f"'defects only unobserved' by {first['bits_per_clean_unobserved_opportunity']:+.3f} "
        f"bits against 'always aligned'; opportunities needed: {needed}. Counts are every "
        "document the condition trains on (its mix plans: filters, upsampling, doses and "
        "repeats included); rates carry Wilson 95% intervals."
    )
    return (
        "<h2>Persona evidence in the training data</h2>\n"
        + html_table(header, rows, "personas")
        + f"\n<p>{html.escape(note)}</p>\n"
    )


def beliefs_html(results: dict[str, Any]) -> str:
    """Every belief-related section whose data are in ``results``."""
    return personas_html(results.get("personas") or {})


def belief_metric_rows(results: dict[str, Any]) -> Iterator[tuple[str, str, str, dict]]:
    """CSV rows: per condition the pooled defection rates (Wilson) and, without an interval
    (they are exact given the counts), each hypothesis's posterior log-odds in bits."""
    for condition, report in (results.get("personas") or {}).items():
        pool = report["pools"]["pooled"]
        for kind in ("observed", "unobserved"):
            yield (
                condition,
                f"persona_{kind}_defection_rate",
                "pooled",
                pool[f"{kind}_defection_rate"],
            )
        for name, block in pool["hypotheses"].items():
            exact = {"value": block["log_odds_bits"], "ci_low": None, "ci_high": None}
            yield condition, "persona_log_odds_bits", name, exact
