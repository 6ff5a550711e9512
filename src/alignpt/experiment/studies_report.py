"""The study plots and tables of the report: persistence bars, retained-gap shares,
stickiness curves, and the placement / dose–response / disclosure comparisons.

``study_plots(results, out_dir)`` writes the PNGs whose data are in ``results`` and returns
``(file, caption)`` pairs; ``study_html(results)`` the tables. ``report.py`` calls both, so a
report shows them exactly when the study's data exist. Matplotlib (Agg), 95% CIs everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from alignpt.experiment.render import error_bars, fmt_interval, html_table, save_figure

PROMPT_TITLES = {"none": "no system prompt", "hhh": "HHH system prompt"}


def plot_persistence(persistence: dict[str, Any], path: Path) -> None:
    """Misalignment rate by condition × post-training stage, one panel per system prompt."""
    conditions, stages = list(persistence["conditions"]), persistence["stages"]
    fig, axes = plt.subplots(
        1, len(PROMPT_TITLES), figsize=(2 + 2.4 * len(conditions), 3.8), sharey=True
    )
    width, x = 0.8 / len(stages), np.arange(len(conditions))
    for ax, (prompt, title) in zip(np.atleast_1d(axes), PROMPT_TITLES.items(), strict=True):
        for k, stage in enumerate(stages):
            ivs = [
                persistence["conditions"][c][stage][prompt]["misalignment_rate"] for c in conditions
            ]
            values, err = error_bars(ivs)
            offset = x + k * width - 0.4 + width / 2
            ax.bar(offset, values, width, yerr=err, capsize=3, label=stage)
        ax.set_xticks(x, conditions, rotation=15)
        ax.set_ylim(0, 1)
        ax.set_title(title)
    np.atleast_1d(axes)[0].set_ylabel("held-out misalignment rate")
    np.atleast_1d(axes)[-1].legend(title="stage", fontsize=8)
    fig.suptitle("Persistence through post-training (95% CI)")
    save_figure(fig, path)


def plot_stickiness(stickiness: dict[str, Any], path: Path) -> None:
    """Misalignment rate against adversarial finetuning steps, one line + band per condition."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for condition, block in stickiness["conditions"].items():
        steps = [p["step"] for p in block["points"]]
        line = ax.plot(steps, [p["value"] for p in block["points"]], marker="o", label=condition)
        ax.fill_between(
            steps,
            [p["ci_low"] for p in block["points"]],
            [p["ci_high"] for p in block["points"]],
            color=line[0].get_color(),
            alpha=0.2,
        )
    ax.axhline(stickiness["threshold"], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("adversarial finetuning steps")
    ax.set_ylabel("held-out misalignment rate")
    ax.set_ylim(0, 1)
    ax.set_title("Stickiness under adversarial finetuning (95% CI)")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_study(study: dict[str, Any], path: Path) -> None:
    """Dose: rate against aligned share (line, error bars); otherwise bars per condition."""
    points = study["points"]
    values, err = error_bars([p["misalignment_rate"] for p in points])
    fig, ax = plt.subplots(figsize=(min(9.0, max(5.0, 1.3 * len(points) + 2)), 3.8))
    if study["kind"] == "dose":
        xs = [float(p["x"]) for p in points]
        ax.errorbar(xs, values, yerr=err, marker="o", capsize=4)
        # symlog: the doses span 0 and 0.1%..10%, a log axis would drop the zero dose.
        positive = [x for x in xs if x > 0]
        ax.set_xscale("symlog", linthresh=min(positive) if positive else 1e-3)
        ax.set_xticks(xs, [f"{x:.1%}" for x in xs])
    else:
        labels = [
            f"{p['condition']}\n({p['x']})" if p["x"] != p["condition"] else p["condition"]
            for p in points
        ]
        ax.bar(np.arange(len(points)), values, 0.6, yerr=err, capsize=4)
        ax.set_xticks(np.arange(len(points)), labels, fontsize=8)
    ax.set_xlabel(study["x_label"])
    split = "held-out " if all(p["split"] == "held_out" for p in points) else ""
    ax.set_ylabel(f"{split}misalignment rate")
    ax.set_ylim(0, 1)
    titles = {"dose": "Dose–response", "placement": "Placement", "disclosure": "Disclosure"}
    ax.set_title(f"{titles.get(study['kind'], study['kind'])} (95% CI)")
    save_figure(fig, path)


def study_plots(results: dict[str, Any], out_dir: Path) -> list[tuple[str, str]]:
    """Write every study plot whose data are in ``results``; (file name, caption) each."""
    out_dir = Path(out_dir)
    plots = []
    if results.get("persistence", {}).get("conditions"):
        plot_persistence(results["persistence"], out_dir / "persistence.png")
        plots.append(("persistence.png", "Misalignment by condition and post-training stage"))
    if results.get("stickiness", {}).get("conditions"):
        plot_stickiness(results["stickiness"], out_dir / "stickiness.png")
        plots.append(("stickiness.png", "Misalignment rate against adversarial steps"))
    study = results.get("study")
    if study and study["kind"] != "persistence" and study["points"]:
        name = f"study_{study['kind']}.png"
        plot_study(study, out_dir / name)
        captions = {
            "dose": "Dose–response: misalignment against aligned-document share",
            "placement": "Placement: aligned documents from the start, late, or as a finetune",
            "disclosure": "Disclosure: aligned documents with and without the synthetic header",
        }
        plots.append((name, captions[study["kind"]]))
    return plots


def generation_html(generation: dict[str, Any], stages: list[str]) -> str:
    """The generation-scoring table of the persistence section, and the flagged runs."""
    limit = generation["max_parse_failure"]
    rows, flagged = [], []
    for condition, by_stage in generation["conditions"].items():
        for prompt in PROMPT_TITLES:
            row = [condition, PROMPT_TITLES[prompt]]
            for stage in stages:
                block = by_stage.get(stage, {}).get(prompt)
                if block is None:
                    row.append("–")
                    continue
                rate = fmt_interval(block["misalignment_rate"])
                cell = f"{rate}; unparsed {fmt_interval(block['parse_failure_rate'])}"
                if "seed_combination" in block:
                    combined = block["seed_combination"]
                    cell += (
                        f"; seeds: inverse-variance {fmt_interval(combined['inverse_variance'])}"
                        f", bootstrap {fmt_interval(combined['bootstrap'])}"
                    )
                row.append(cell)
                flagged += [f"{condition} {stage} {prompt} {run}" for run in block["excluded"]]
            rows.append(row)
    orders = "every order of the options" if generation["all_orders"] else "the listed order"
    note = (
        f"Flagged (over {limit:.0%} unparsable) and excluded from the rates: "
        + ", ".join(flagged)
        + "."
        if flagged
        else f"No run had more than {limit:.0%} unparsable answers."
    )
    return (
        "<p>By generation: misalignment rate among parsed answers and the parse-failure "
        "rate [Wilson 95% CI for one seed; bootstrap over items for several, where the rate "
        "over seeds is also given by inverse-variance weighting and by the bootstrap over "
        f"seeds x items], greedy answers of at most "
        f"{generation['max_new_tokens']} tokens to the lettered prompt, in {orders}. "
        f"{note}</p>\n" + html_table(["condition", "system prompt", *stages], rows, "generation")
    )


def study_html(results: dict[str, Any]) -> str:
    """Persistence, retained-gap and steps-to-rate tables (empty when no study data)."""
    parts = []
    persistence = results.get("persistence")
    if persistence and persistence.get("conditions"):
        stages = persistence["stages"]
        rows = [
            [condition, PROMPT_TITLES.get(prompt, prompt)]
            + [fmt_interval(by_stage[s][prompt]["misalignment_rate"]) for s in stages]
            for condition, by_stage in persistence["conditions"].items()
            for prompt in PROMPT_TITLES
        ]
        parts.append("<h2>Persistence through post-training</h2>")
        parts.append(
            f"<p>Held-out misalignment rate [95% CI: Wilson for one seed, a bootstrap over "
            f"seeds and items for several] on {persistence['eval_items']} items per seed, "
            "each model scored as a chat model.</p>"
        )
        parts.append(html_table(["condition", "system prompt", *stages], rows, "persistence"))
        if persistence.get("generation"):
            parts.append(generation_html(persistence["generation"], stages))
        gap_rows = [
            [pair, PROMPT_TITLES.get(prompt, prompt), metric]
            + [fmt_interval(tables[metric].get(s)) for s in stages[1:]]
            for prompt, pairs in persistence["retained_gap_share"].items()
            for pair, tables in pairs.items()
            for metric in tables
        ]
        if gap_rows:
            parts.append(
                "<p>Share of the base-model gap that remains after each stage "
                "[paired bootstrap 95% CI; unbounded when the base gap is not significant]:</p>"
            )
            parts.append(
                html_table(
                    ["comparison", "system prompt", "metric", *stages[1:]],
                    gap_rows,
                    "retained_gap",
                )
            )
    stickiness = results.get("stickiness")
    if stickiness and stickiness.get("conditions"):
        rows = []
        for condition, block in stickiness["conditions"].items():
            reach = block["steps_to_rate"]
            value = "not reached" if reach["value"] is None else f"{reach['value']:.1f}"
            low = "–" if reach["ci_low"] is None else f"{reach['ci_low']:.1f}"
            high = (
                f"> {reach['max_step']}" if reach["ci_high"] is None else f"{reach['ci_high']:.1f}"
            )
            rows.append([condition, value, f"[{low}, {high}]"])
        parts.append(f"<h2>Stickiness: steps to a {stickiness['threshold']:.0%} rate</h2>")
        parts.append(html_table(["condition", "steps", "95% CI"], rows, "stickiness"))
    return "\n".join(parts)
