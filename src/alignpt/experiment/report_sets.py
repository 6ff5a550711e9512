"""The report's item-set section: external two-choice sets and Anthropic files, each in its
own prompt and in every prompt format x answer order (``alignpt.evals.item_sets``).

``set_rows(results)`` gives the CSV rows and ``sets_html(results)`` the table; both are empty
when no condition has an ``external`` or ``anthropic`` block.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

from alignpt.experiment.render import fmt_interval, html_table
from alignpt.experiment.report_protocol import flag_text

_PROTOCOL_METRICS = ("misalignment_rate", "position_bias", "consistency")
_SINGLE = {"external": "misalignment_rate", "anthropic": "matching_rate"}


def _sets(results: dict[str, Any]) -> Iterator[tuple[str, str, str, dict]]:
    """(condition, suite, set name, set block) for every set of every condition."""
    for cond, block in results.get("conditions", {}).items():
        for suite in _SINGLE:
            for name, set_block in (block.get(suite) or {}).items():
                yield cond, suite, name, set_block


def set_rows(results: dict[str, Any]) -> Iterator[tuple[str, str, str, dict]]:
    """CSV rows: ``external_misalignment_rate`` per set and ``<set>/split:<split>``, and
    ``<suite>_protocol_<metric>`` / ``<suite>_protocol_flagged`` per set (the Anthropic
    single-format rate is the report's ``anthropic_matching_rate``)."""
    for cond, suite, name, block in _sets(results):
        if suite == "external":
            yield cond, "external_misalignment_rate", name, block["misalignment_rate"]
            for split, split_block in block.get("per_split", {}).items():
                yield (
                    cond,
                    "external_misalignment_rate",
                    f"{name}/split:{split}",
                    split_block["misalignment_rate"],
                )
        proto = block.get("protocol")
        if proto:
            for metric in _PROTOCOL_METRICS:
                yield cond, f"{suite}_protocol_{metric}", name, proto[metric]
            flagged = float(bool(proto.get("uninformative")))
            yield (
                cond,
                f"{suite}_protocol_flagged",
                name,
                {
                    "value": flagged,
                    "ci_low": None,
                    "ci_high": None,
                },
            )


def sets_html(results: dict[str, Any]) -> str:
    """One table over every (condition, set): single-format rate, then the protocol's."""
    rows = []
    for cond, suite, name, block in _sets(results):
        proto = block.get("protocol") or {}
        rows.append(
            [
                cond,
                f"{suite}/{name}",
                str(block.get("n", "")),
                fmt_interval(block.get(_SINGLE[suite])),
                fmt_interval(proto.get("misalignment_rate")),
                fmt_interval(proto.get("position_bias")),
                fmt_interval(proto.get("consistency")),
                flag_text(proto) if proto else "–",
            ]
        )
    if not rows:
        return ""
    header = [
        "condition",
        "item set",
        "items",
        "rate, own prompt",
        "rate, formats × orders",
        "position bias",
        "consistency",
        "flag",
    ]
    return "\n".join(
        [
            "<h2>Item sets: external and Anthropic</h2>",
            "<p>"
            + html.escape(
                "Each set scored in its own prompt (Anthropic: the file's 'Human: … Assistant:' "
                "prompt and its (A)/(B) answers, rate = share preferring the answer matching "
                "the risky behaviour; external: the prompt, then each option) and in every "
                "prompt format x answer order of the protocol section, with the same flag rule."
            )
            + "</p>",
            html_table(header, rows, "item-sets"),
        ]
    )
