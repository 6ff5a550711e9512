"""The report's trajectory section: misalignment against tokens seen, per condition, with 95%
interval bands (``results["trajectory"]``, see ``alignpt.experiment.trajectory``).

``trajectory_plot(section, path)`` draws the figure (PNG or SVG by the path's suffix, written
atomically); ``trajectory_plots``, ``trajectory_rows`` and ``trajectory_html`` give the
report's figure files, CSV rows and table.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import EngFormatter, MaxNLocator

from alignpt.errors import UserError
from alignpt.experiment.render import PLOT_DPI, fmt_interval, html_table
from alignpt.fileio import atomic_path

PLOT_STEM = "trajectory"
_PANELS = (
    ("misalignment_rate", "misalignment rate ({split}, own prompt)"),
    ("protocol_misalignment_rate", "format-averaged rate (formats x orders)"),
)


def _section(results: dict[str, Any]) -> dict | None:
    section = results.get("trajectory")
    return section if section and section.get("conditions") else None


def trajectory_plot(section: dict, path: Path) -> Path:
    """Rate against tokens seen, one line per condition with its 95% band; a second panel
    for the protocol's format-averaged rate when present."""
    conditions = section["conditions"]
    panels = [
        (key, title.format(split=section["metric"].replace("_", "-")))
        for key, title in _PANELS
        if any(key in p for points in conditions.values() for p in points)
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        for condition, points in conditions.items():
            shown = [p for p in points if p.get(key) and p[key].get("value") is not None]
            tokens = [p["tokens_seen"] for p in shown]
            values = [p[key]["value"] for p in shown]
            (line,) = ax.plot(tokens, values, marker="o", markersize=3, label=condition)
            bounded = [p for p in shown if p[key].get("ci_low") is not None]
            if bounded:
                ax.fill_between(
                    [p["tokens_seen"] for p in bounded],
                    [p[key]["ci_low"] for p in bounded],
                    [p[key]["ci_high"] for p in bounded],
                    color=line.get_color(),
                    alpha=0.18,
                    linewidth=0,
                )
        ax.axhline(0.5, color="grey", linewidth=0.6, linestyle=":")
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 40k, 1.2M, ...
        ax.set_xlabel("tokens seen")
        ax.set_ylabel("share of items")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Misalignment along training (95% CI bands)", fontsize=10)
    fig.tight_layout()
    kind = Path(path).suffix.lstrip(".").lower()
    if kind not in ("png", "svg"):
        plt.close(fig)
        raise UserError(f"{path}: give a .png or .svg file for the plot")
    # SVG: no date and fixed element ids, so the same results give the same bytes
    metadata = {"Date": None} if kind == "svg" else None
    with atomic_path(path) as tmp, plt.rc_context({"svg.hashsalt": "alignpt"}):
        fig.savefig(tmp, dpi=PLOT_DPI, format=kind, metadata=metadata)
    plt.close(fig)
    return Path(path)


def trajectory_plots(results: dict[str, Any], out_dir: Path) -> list[tuple[str, str]]:
    """``trajectory.png`` (shown) and ``trajectory.svg`` when the results have a trajectory."""
    section = _section(results)
    if section is None:
        return []
    trajectory_plot(section, out_dir / f"{PLOT_STEM}.png")
    trajectory_plot(section, out_dir / f"{PLOT_STEM}.svg")
    return [(f"{PLOT_STEM}.png", "Misalignment rate against tokens seen (every checkpoint)")]


def trajectory_rows(results: dict[str, Any]) -> Iterator[tuple[str, str, str, dict]]:
    """``trajectory_<metric>`` per condition, split ``tokens:<n>``."""
    section = _section(results)
    for condition, points in (section or {}).get("conditions", {}).items():
        for point in points:
            for key, _ in _PANELS:
                if point.get(key):
                    yield (
                        condition,
                        f"trajectory_{key}",
                        f"tokens:{point['tokens_seen']}",
                        point[key],
                    )


def trajectory_html(results: dict[str, Any]) -> str:
    """The points as a table (empty without a trajectory)."""
    section = _section(results)
    if section is None:
        return ""
    rows = [
        [
            condition,
            str(point["step"]),
            f"{point['tokens_seen']:,}",
            fmt_interval(point["misalignment_rate"]),
            fmt_interval(point.get("protocol_misalignment_rate")),
            "UNINFORMATIVE" if point.get("protocol_flag_reasons") else "ok",
        ]
        for condition, points in section["conditions"].items()
        for point in points
    ]
    header = [
        "condition",
        "step",
        "tokens seen",
        f"rate ({section['metric']})",
        "format-averaged",
        "flag",
    ]
    return "\n".join(
        [
            "<h2>Trajectory</h2>",
            "<p>"
            + html.escape(
                "Every saved checkpoint of every training run evaluated like the final model "
                "(seeds combined per step); the plot is trajectory.png / trajectory.svg."
            )
            + "</p>",
            html_table(header, rows, "trajectory"),
        ]
    )
