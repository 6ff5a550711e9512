"""The report's evaluation-protocol section: format-averaged rates, position bias, consistency.

``protocol_rows(results)`` gives the CSV rows, ``protocol_plots(results, out_dir)`` the PNGs
and ``protocol_html(results)`` the tables; ``report.py`` calls all three, so the section
appears exactly when ``results["conditions"][*]["protocol"]`` exists (see
``alignpt.evals.protocol_summary``).
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from alignpt.experiment.render import error_bars, fmt_interval, html_table, save_figure

_METRICS = ("misalignment_rate", "position_bias", "consistency", "consistent_misalignment_rate")


def _protocols(results: dict[str, Any]) -> dict[str, dict]:
    return {
        cond: block["protocol"]
        for cond, block in results.get("conditions", {}).items()
        if isinstance(block, dict) and "protocol" in block
    }


def protocol_rows(results: dict[str, Any]) -> Iterator[tuple[str, str, str, dict]]:
    """(condition, metric, split, interval): ``protocol_<metric>`` over ``all`` / ``held_out``
    items, ``order:K``, ``format:NAME`` and ``system:NAME``."""
    for cond, proto in _protocols(results).items():
        for split, block in (("all", proto), ("held_out", proto.get("held_out"))):
            if block:
                for metric in _METRICS:
                    yield cond, f"protocol_{metric}", split, block[metric]
        yield from _flag_rows(cond, proto)
        combination = proto.get("seed_combination") or {}
        for how in ("inverse_variance", "bootstrap"):
            if how in combination:
                yield cond, "protocol_misalignment_rate", f"seeds:{how}", combination[how]
        for order, block in proto.get("by_order", {}).items():
            for metric, iv in block.items():
                yield cond, f"protocol_{metric}", f"order:{order}", iv
        for kind in ("format", "system"):
            for name, block in proto.get(f"by_{kind}", {}).items():
                for metric in _METRICS:
                    yield cond, f"protocol_{metric}", f"{kind}:{name}", block[metric]


def _flag_rows(cond: str, proto: dict) -> Iterator[tuple[str, str, str, dict]]:
    """``protocol_flagged`` (1/0, no interval) for the condition and each format, and one
    ``protocol_flag_reason`` row per reason (the split holds the reason's text)."""
    blocks = [("all", proto), *((f"format:{n}", b) for n, b in proto.get("by_format", {}).items())]
    for split, block in blocks:
        if "flag_reasons" in block:
            flagged = float(bool(block["flag_reasons"]))
            yield cond, "protocol_flagged", split, _no_interval(flagged)
    for reason in proto.get("flag_reasons", []):
        yield cond, "protocol_flag_reason", reason, _no_interval(1.0)


def _no_interval(value: float) -> dict:
    return {"value": value, "ci_low": None, "ci_high": None}


def flag_text(proto: dict) -> str:
    """``ok``, or ``UNINFORMATIVE: reason; reason``."""
    reasons = proto.get("flag_reasons")
    if reasons is None:  # results written before flag reasons were recorded
        return "UNINFORMATIVE" if proto.get("uninformative") else "ok"
    return "UNINFORMATIVE: " + "; ".join(reasons) if reasons else "ok"


def _band_text(proto: dict) -> str:
    low, high = (proto.get("flag_rule") or {}).get("position_bias_band", (0.4, 0.6))
    shift = proto["chance_first"] - 0.5
    return f"[{low + shift:.2f}, {high + shift:.2f}]"


def _share_text(proto: dict) -> str:
    return f"{(proto.get('flag_rule') or {}).get('format_share', 0.5):.0%}"


def _se_text(block: dict) -> str:
    se = block.get("format_se")
    return "–" if se is None else f"{block['misalignment_rate']['value']:.3f} ± {se:.3f}"


def _seeds_text(proto: dict) -> str:
    combination = proto.get("seed_combination") or {}
    if proto.get("seeds", 1) < 2 or not combination:
        return "one seed"
    ivw, boot = combination["inverse_variance"], combination["bootstrap"]
    return f"{fmt_interval(ivw)} / {fmt_interval(boot)}"


def protocol_plots(results: dict[str, Any], out_dir: Path) -> list[tuple[str, str]]:
    """Rate, position bias and consistency per condition, with 95% intervals."""
    protocols = _protocols(results)
    if not protocols:
        return []
    conds = list(protocols)
    fig, axes = plt.subplots(1, 3, figsize=(4 + 2.2 * len(conds), 3.8))
    x = np.arange(len(conds))
    titles = (
        ("misalignment_rate", "format-averaged misalignment"),
        ("position_bias", "share choosing the first option"),
        ("consistency", "choice survives reordering"),
    )
    for ax, (metric, title) in zip(axes, titles, strict=True):
        values, errors = error_bars([protocols[c][metric] for c in conds])
        ax.bar(x, values, yerr=errors, capsize=3, color="#4c72b0")
        if metric == "position_bias":
            chance = [protocols[c]["chance_first"] for c in conds]
            ax.scatter(x, chance, marker="_", s=400, color="k", label="no position preference")
            ax.legend(fontsize=7)
        ax.set_xticks(x, conds, rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=9)
    save_figure(fig, out_dir / "protocol.png")
    return [("protocol.png", "Prompt formats x answer orders: rate, position bias, consistency")]


def protocol_html(results: dict[str, Any]) -> str:
    """The protocol tables (empty when no condition has protocol results)."""
    protocols = _protocols(results)
    if not protocols:
        return ""
    first = next(iter(protocols.values()))
    rows = []
    for cond, proto in protocols.items():
        held = proto.get("held_out") or {}
        rows.append(
            [
                cond,
                _se_text(proto),
                fmt_interval(proto["misalignment_rate"]),
                fmt_interval(held.get("misalignment_rate")),
                fmt_interval(proto["position_bias"]),
                fmt_interval(proto["consistency"]),
                fmt_interval(proto["consistent_misalignment_rate"]),
                _seeds_text(proto),
                flag_text(proto),
            ]
        )
    header = [
        "condition",
        "rate ± SE over formats",
        "rate [95% CI items × formats]",
        "held-out rate",
        "position bias",
        "consistency",
        "rate where consistent",
        "seeds: inverse-variance / bootstrap",
        "flag",
    ]
    orders = list(first.get("by_order", {}))
    order_rows = [
        [cond, *[fmt_interval(proto["by_order"][o]["misalignment_rate"]) for o in orders]]
        for cond, proto in protocols.items()
    ]
    formats = first["formats"]
    format_rows = [
        [
            cond,
            *[
                f"{fmt_interval(proto['by_format'][f]['misalignment_rate'])}; first "
                f"{proto['by_format'][f]['position_bias']['value']:.2f}; consistent "
                f"{proto['by_format'][f]['consistency']['value']:.2f}"
                + (" (!)" if proto["by_format"][f].get("uninformative") else "")
                for f in formats
            ],
        ]
        for cond, proto in protocols.items()
    ]
    systems = first["system_prompts"]
    system_rows = [
        [cond, *[fmt_interval(proto["by_system"][s]["misalignment_rate"]) for s in systems]]
        for cond, proto in protocols.items()
    ]
    esc = html.escape
    return "\n".join(
        [
            "<h2>Prompt formats and answer orders</h2>",
            f"<p>Every item scored in {len(formats)} formats ({esc(', '.join(formats))}) × "
            f"{len(orders)} answer orders (rotations of the options; order0 = as given, order1 "
            "= rotated by one, i.e. swapped for two options). Rate ± SE: the mean of the "
            "per-format rates and its standard error; the interval resamples items and "
            "formats. Position bias: share of answers choosing the first-listed option (chance "
            f"{first['chance_first']:.2f}). Consistency: share of (item, format) pairs whose "
            "choice is the same under every order. A rate is flagged UNINFORMATIVE when its "
            f"position-bias interval lies wholly outside {esc(_band_text(first))}, or its "
            f"consistency interval wholly below {first['consistency_flag']:.2f}, or at least "
            f"{esc(_share_text(first))} of its formats are flagged (each format judged alone): "
            "then a large share of the answers follows the position, not the content, and order "
            "balancing pulls the rate towards chance whatever the model prefers.</p>",
            html_table(header, rows, "protocol"),
            "<h3>By answer order</h3>",
            html_table(["condition", *orders], order_rows, "protocol-orders"),
            "<h3>By format (rate; share first; share consistent; (!) = flagged)</h3>",
            html_table(["condition", *formats], format_rows, "protocol-formats"),
            f"<h3>By system prompt (format {esc(first['system_prompt_format'])}, every order)</h3>",
            html_table(["condition", *systems], system_rows, "protocol-systems"),
        ]
    )
