"""Pieces the report's pages and figures share: interval text, error bars, figure saving and
HTML tables (matplotlib's Agg backend, so no display is needed)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

PLOT_DPI = 100


def fmt_interval(iv: dict | None, digits: int = 3) -> str:
    """``value [low, high]``; ``[unbounded]`` when the data cannot bound the interval."""
    if not iv or iv.get("value") is None:
        return "–"
    if iv.get("ci_low") is None or iv.get("ci_high") is None:
        return f"{iv['value']:.{digits}f} [unbounded]"
    return f"{iv['value']:.{digits}f} [{iv['ci_low']:.{digits}f}, {iv['ci_high']:.{digits}f}]"


def error_bars(ivs: list[dict | None]) -> tuple[list[float], list[list[float]]]:
    """Values and asymmetric error-bar lengths (NaN where a value is missing)."""
    values, low, high = [], [], []
    for iv in ivs:
        value = iv["value"] if iv and iv.get("value") is not None else np.nan
        values.append(value)
        low.append(value - iv["ci_low"] if iv and iv.get("ci_low") is not None else 0.0)
        high.append(iv["ci_high"] - value if iv and iv.get("ci_high") is not None else 0.0)
    return values, [low, high]


def save_figure(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)


def html_table(header: list[str], rows: list[list[str]], table_id: str) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
