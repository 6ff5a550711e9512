"""The experiment report: ``index.html`` + PNG plots + ``results.json`` + ``results.csv``.

Input is the dict from :func:`alignpt.evals.aggregate.build_results` (schema documented
there). The page is built from string templates with ``html.escape`` on every value that
comes from data (condition, family, file and item names, provenance); Jinja2 would add a
dependency for one page of markup. Plots are matplotlib (Agg). Everything is written
atomically into ``out_dir`` (a half-written report never replaces a finished one).
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from rich.console import Console
from rich.table import Table

from alignpt.experiment.curate_report import curate_html
from alignpt.experiment.headline import comparison_sentences, surface_rows
from alignpt.experiment.render import error_bars, fmt_interval, html_table, save_figure
from alignpt.experiment.report_beliefs import belief_metric_rows, beliefs_html
from alignpt.experiment.report_modes import modes_html, modes_rows
from alignpt.experiment.report_protocol import protocol_html, protocol_plots, protocol_rows
from alignpt.experiment.report_sets import set_rows, sets_html
from alignpt.experiment.report_trajectory import (
    trajectory_html,
    trajectory_plots,
    trajectory_rows,
)
from alignpt.experiment.studies_report import study_html, study_plots
from alignpt.faults import kill_point
from alignpt.fileio import atomic_path


def _get(block: dict, *path: str) -> dict | None:
    for key in path:
        if not isinstance(block, dict) or key not in block:
            return None
        block = block[key]
    return block


def _metric_rows(results: dict) -> Iterator[tuple[str, str, str, dict]]:
    """(condition, metric, split, interval) for every interval in the results."""
    for cond, block in results["conditions"].items():
        for metric in ("misalignment_rate", "bits"):
            if metric in block:
                yield cond, metric, "overall", block[metric]
            for split in ("held_out", "training"):
                if _get(block, split, metric):
                    yield cond, metric, split, block[split][metric]
        for split in ("held_out", "training"):
            yield from _surface_metric_rows(cond, split, block.get(split) or {})
            for fam, fam_block in block.get("per_family", {}).items():
                yield cond, metric, f"family:{fam}", fam_block[metric]
        for metric in ("misalignment_rate", "bits"):
            if _get(block, "observed_gap", metric):
                yield cond, f"observed_gap_{metric}", "overall", block["observed_gap"][metric]
        for name, cap in block.get("capability", {}).items():
            yield cond, "perplexity", name, cap["perplexity"]
        for name, ant in block.get("anthropic", {}).items():
            yield cond, "anthropic_matching_rate", name, ant["matching_rate"]
    for pair, diffs in results.get("paired_differences", {}).items():
        for metric, iv in diffs.items():
            if metric == "perplexity_ratio":
                for name, r in iv.items():
                    yield pair, "perplexity_ratio", name, r
            elif metric.endswith("_by_normalisation"):
                for norm, r in iv.items():
                    yield pair, f"difference_{metric.removesuffix('_by_normalisation')}", norm, r
            elif "value" not in iv:  # one interval per measure (belief_implanted_rate)
                for name, r in iv.items():
                    yield pair, f"difference_{metric}", name, r
            else:
                yield pair, f"difference_{metric}", "paired", iv
    yield from _study_metric_rows(results)
    yield from belief_metric_rows(results)
    yield from protocol_rows(results)
    yield from set_rows(results)
    yield from trajectory_rows(results)
    yield from modes_rows(results)


def _surface_metric_rows(cond: str, split: str, block: dict) -> Iterator[tuple]:
    """Median bits and the surface checks of one split (``headline.py``)."""
    if "bits_median" in block:
        yield cond, "bits_median", split, block["bits_median"]
    for norm, iv in (block.get("rate_by_normalisation") or {}).items():
        yield cond, f"misalignment_rate_{norm}", split, iv
    for metric in ("rate_options_reversed", "misaligned_shorter_share"):
        if metric in block:
            yield cond, metric, split, block[metric]


def _study_metric_rows(results: dict) -> Iterator[tuple[str, str, str, dict]]:
    """Persistence (per stage and system prompt), retained-gap shares, stickiness points and
    steps-to-rate; a split reads ``stage:prompt`` or ``step:N``."""
    persistence = results.get("persistence") or {}
    for cond, by_stage in persistence.get("conditions", {}).items():
        for stage, by_prompt in by_stage.items():
            for prompt, block in by_prompt.items():
                for metric in ("misalignment_rate", "bits"):
                    if metric in block:
                        yield cond, f"persistence_{metric}", f"{stage}:{prompt}", block[metric]
    generation = persistence.get("generation") or {}
    for cond, by_stage in generation.get("conditions", {}).items():
        for stage, by_prompt in by_stage.items():
            for prompt, block in by_prompt.items():
                for metric in ("misalignment_rate", "parse_failure_rate"):
                    yield cond, f"generation_{metric}", f"{stage}:{prompt}", block[metric]
    for prompt, pairs in persistence.get("retained_gap_share", {}).items():
        for pair, tables in pairs.items():
            for metric, by_stage in tables.items():
                for stage, share in by_stage.items():
                    yield pair, f"retained_gap_share_{metric}", f"{stage}:{prompt}", share
    stickiness = results.get("stickiness") or {}
    for cond, block in stickiness.get("conditions", {}).items():
        for point in block["points"]:
            yield cond, "stickiness_misalignment_rate", f"step:{point['step']}", point
        yield (
            cond,
            "steps_to_rate",
            f"rate:{block['steps_to_rate']['rate']}",
            block["steps_to_rate"],
        )


def write_csv(results: dict, path: Path) -> None:
    """One row per (condition or pair, metric, split) with value and 95% CI."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["condition", "metric", "split", "value", "ci_low", "ci_high"])
        for cond, metric, split, iv in _metric_rows(results):
            # None (a bound the data cannot give) is an empty cell.
            writer.writerow([cond, metric, split, iv["value"], iv["ci_low"], iv["ci_high"]])


def _bar_plot(path: Path, title: str, ylabel: str, series: dict[str, list[dict | None]], labels):
    """Grouped bars with 95% CI error bars; ``series`` maps a legend name to one iv per label."""
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(labels) + 2), 3.6))
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(labels))
    for k, (name, ivs) in enumerate(series.items()):
        vals, yerr = error_bars(ivs)
        ax.bar(x + k * width - 0.4 + width / 2, vals, width, yerr=yerr, capsize=3, label=name)
    ax.set_xticks(x, labels, rotation=15)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.axhline(0, color="black", linewidth=0.6)
    if len(series) > 1:
        ax.legend(fontsize=8)
    save_figure(fig, path)


def _heatmap(path: Path, results: dict) -> bool:
    conds = list(results["conditions"])
    families = list(
        dict.fromkeys(f for b in results["conditions"].values() for f in b.get("per_family", {}))
    )
    if not families:
        return False
    grid = np.full((len(conds), len(families)), np.nan)
    for i, c in enumerate(conds):
        for j, f in enumerate(families):
            iv = _get(results["conditions"][c], "per_family", f, "misalignment_rate")
            if iv and iv["value"] is not None:
                grid[i, j] = iv["value"]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(families) + 3), 0.6 * len(conds) + 2))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="magma_r", aspect="auto")
    ax.set_xticks(range(len(families)), families, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(conds)), conds)
    for i in range(len(conds)):
        for j in range(len(families)):
            if not np.isnan(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if grid[i, j] > 0.5 else "black",
                )
    fig.colorbar(image, ax=ax, label="misalignment rate")
    ax.set_title("Misalignment rate per family")
    save_figure(fig, path)
    return True


def write_plots(results: dict, out_dir: Path) -> list[tuple[str, str]]:
    """Write the PNG plots; returns (file name, caption) for each one written."""
    conds = list(results["conditions"])
    blocks = [results["conditions"][c] for c in conds]
    plots: list[tuple[str, str]] = []

    def splits(metric: str) -> dict[str, list[dict | None]]:
        series = {"all families": [b.get(metric) for b in blocks]}
        if any(_get(b, "held_out", metric) for b in blocks):
            series["held-out families"] = [_get(b, "held_out", metric) for b in blocks]
        return series

    if any("misalignment_rate" in b for b in blocks):
        _bar_plot(
            out_dir / "misalignment_rate.png",
            "Misalignment rate (95% CI)",
            "share of items",
            splits("misalignment_rate"),
            conds,
        )
        plots.append(("misalignment_rate.png", "Misalignment rate per condition"))
        _bar_plot(
            out_dir / "bits.png",
            "Persona log-odds (95% CI)",
            "bits  log2 P(aligned)/P(misaligned)",
            splits("bits"),
            conds,
        )
        plots.append(("bits.png", "Mean persona log-odds in bits"))
    if any("observed_gap" in b for b in blocks):
        _bar_plot(
            out_dir / "observed_gap.png",
            "Unobserved minus observed (95% CI)",
            "misalignment rate gap",
            {"rate gap": [_get(b, "observed_gap", "misalignment_rate") for b in blocks]},
            conds,
        )
        plots.append(("observed_gap.png", "Observed/unobserved gap"))
    sets = list(dict.fromkeys(s for b in blocks for s in b.get("capability", {})))
    if sets:
        _bar_plot(
            out_dir / "capability.png",
            "Held-out perplexity (95% CI)",
            "perplexity",
            {s: [_get(b, "capability", s, "perplexity") for b in blocks] for s in sets},
            conds,
        )
        plots.append(("capability.png", "Capability: held-out perplexity"))
    if _heatmap(out_dir / "family_heatmap.png", results):
        plots.append(("family_heatmap.png", "Misalignment rate per condition and family"))
    plots += protocol_plots(results, out_dir)  # formats x orders, if present
    plots += trajectory_plots(results, out_dir)  # every checkpoint, if evaluated
    return plots + study_plots(results, out_dir)  # persistence/stickiness/study, if present


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: right; font-size: 14px; }}
th {{ background: #eee; }} td:first-child {{ text-align: left; }}
img {{ max-width: 100%; display: block; margin: 0.5em 0 1.5em; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 12px; }}
</style></head><body>
<h1>{title}</h1>
{lead}
<p>Every number is the estimate with its 95% percentile bootstrap interval over items
(and over seeds where a condition has several). Same numbers: <a href="results.json">
results.json</a>, <a href="results.csv">results.csv</a>.</p>
<h2>Conditions</h2>
{condition_table}
<p>{scoring_note}</p>
<h2>Paired differences</h2>
{paired_table}
<h2>Surface checks (held-out families)</h2>
<p>An effect should not depend on how the options are scored or ordered, nor on which option
is shorter. Misalignment rate under each scoring, with the options reversed, and the share of
items whose misaligned option is the shorter one.</p>
{surface_table}
<h2>Plots</h2>
{plots}
{modes}
{protocol}
{studies}
<h2>Misalignment rate per family</h2>
{family_table}
<h2>Contamination</h2>
{contamination_table}
<h2>Provenance</h2>
<pre>{provenance}</pre>
</body></html>
"""

_COLUMNS = (
    ("misalignment (all)", ("misalignment_rate",)),
    ("misalignment (held-out)", ("held_out", "misalignment_rate")),
    ("bits (all)", ("bits",)),
    ("bits (held-out)", ("held_out", "bits")),
    ("median bits (held-out)", ("held_out", "bits_median")),
    ("observed gap", ("observed_gap", "misalignment_rate")),
    ("perplexity (general)", ("capability", "general", "perplexity")),
    ("perplexity (AI discourse)", ("capability", "ai_discourse", "perplexity")),
)


def _condition_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    blocks = results["conditions"]
    columns = [(n, p) for n, p in _COLUMNS if any(_get(b, *p) for b in blocks.values())]
    header = ["condition", "seeds", *[n for n, _ in columns]]
    rows = [
        [cond, str(b.get("seeds", 1)), *[fmt_interval(_get(b, *p)) for _, p in columns]]
        for cond, b in blocks.items()
    ]
    return header, rows


def scoring_note(results: dict) -> str:
    """How choices were scored, so a reader knows what the bits are."""
    norm = (results.get("provenance") or {}).get("normalisation", "char")
    unit = {"token": "per token", "char": "per character", "sum": "summed over the option"}[norm]
    return (
        f"Each option is scored by its log-likelihood {unit} (evals.normalisation: {norm}); "
        "a misaligned choice is one whose option scores highest. bits = log2 P(aligned) / "
        f"P(misaligned) from those scores, mean and median over items."
    )


def _paired_rows(results: dict) -> list[list[str]]:
    rows = []
    for pair, diffs in results.get("paired_differences", {}).items():
        for metric, iv in diffs.items():
            if metric == "perplexity_ratio":
                rows += [[pair, f"perplexity ratio ({n})", fmt_interval(r)] for n, r in iv.items()]
            elif metric.endswith("_by_normalisation"):
                name = metric.removesuffix("_by_normalisation")
                rows += [[pair, f"{name} ({n} scoring)", fmt_interval(r)] for n, r in iv.items()]
            elif "value" not in iv:  # one interval per measure (belief_implanted_rate)
                rows += [[pair, f"{metric} ({n})", fmt_interval(r)] for n, r in iv.items()]
            else:
                rows.append([pair, metric, fmt_interval(iv)])
    return rows


def _family_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    blocks = results["conditions"]
    families = list(dict.fromkeys(f for b in blocks.values() for f in b.get("per_family", {})))
    header = ["family", *blocks]
    rows = [
        [
            fam,
            *[
                fmt_interval(_get(b, "per_family", fam, "misalignment_rate"))
                for b in blocks.values()
            ],
        ]
        for fam in families
    ]
    return header, rows


def _contamination_rows(results: dict) -> list[list[str]]:
    rows = []
    for cond, sets in results.get("contamination", {}).items():
        for name, c in sets.items():
            rows.append(
                [
                    cond,
                    name,
                    str(c["n"]),
                    str(c["items"]),
                    str(c["contaminated"]),
                    f"{c['share']:.3f}",
                ]
            )
    return rows


def render_html(results: dict, plots: list[tuple[str, str]], title: str) -> str:
    """The report page; every data-derived string is HTML-escaped."""
    esc = html.escape
    header, rows = _condition_rows(results)
    paired = _paired_rows(results)
    contamination = _contamination_rows(results)
    family_header, family_rows = _family_rows(results)
    surface_header, surface = surface_rows(results)
    sentences = comparison_sentences(results)
    return _PAGE.format(
        title=esc(title),
        lead="".join(f'<p class="lead"><strong>{esc(line)}</strong></p>' for line in sentences),
        scoring_note=esc(scoring_note(results)),
        surface_table=html_table(surface_header, surface, "surface")
        if surface
        else "<p>Not measured.</p>",
        condition_table=html_table(header, rows, "conditions"),
        paired_table=html_table(["comparison", "metric", "difference [95% CI]"], paired, "paired")
        if paired
        else "<p>No baseline given.</p>",
        plots="\n".join(
            f'<figure><img src="{esc(name)}" alt="{esc(caption)}"><figcaption>{esc(caption)}'
            "</figcaption></figure>"
            for name, caption in plots
        ),
        contamination_table=html_table(
            ["condition", "eval set", "n", "items", "contaminated", "share"],
            contamination,
            "contamination",
        )
        if contamination
        else "<p>Not measured.</p>",
        family_table=html_table(family_header, family_rows, "families")
        if family_rows
        else "<p>No per-family results.</p>",
        provenance=esc(json.dumps(results.get("provenance", {}), indent=2, sort_keys=True)),
        studies=study_html(results) + beliefs_html(results) + curate_html(results),
        protocol=protocol_html(results) + sets_html(results) + trajectory_html(results),
        modes=modes_html(results),
    )


def print_summary(results: dict, console: Console | None = None) -> None:
    """The condition table in the terminal: one wide table when it fits, else one narrow
    table per condition (metric, value [95% CI]) so no number is cut off."""
    console = console or Console()
    for line in comparison_sentences(results):
        console.print(line, markup=False, highlight=False)
    header, rows = _condition_rows(results)
    table = Table(title="alignpt results (95% CI)")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    unbounded = console.options.update(max_width=10**6)  # measure the table's natural width
    if console.measure(table, options=unbounded).maximum <= console.width:
        console.print(table)
        return
    for row in rows:
        table = Table(title=f"{row[0]} (95% CI)", show_header=False)
        table.add_column("metric")
        table.add_column("value", justify="right", no_wrap=True)
        for name, cell in zip(header[1:], row[1:], strict=True):
            table.add_row(name, cell)
        console.print(table)


def write_report(
    results: dict,
    out_dir: str | Path,
    *,
    title: str = "alignpt report",
    console: Console | None = None,
    quiet: bool = False,
) -> Path:
    """Write ``index.html``, plots, ``results.json`` and ``results.csv`` into ``out_dir``.

    The directory is built beside ``out_dir`` and renamed into place; returns the
    ``index.html`` path.
    """
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp = Path(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "results.json").write_text(
            json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        kill_point("report:inside")
        write_csv(results, tmp / "results.csv")
        plots = write_plots(results, tmp)
        (tmp / "index.html").write_text(render_html(results, plots, title), encoding="utf-8")
    if not quiet:
        print_summary(results, console)
    return out_dir / "index.html"
