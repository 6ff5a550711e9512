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


BELIEF_LABELS = {
    "mcq_knowledge": "MCQ knowledge",
    "mcq_distinguish": "MCQ distinguish",
    "open_belief": "open-ended belief",
    "generative_distinguish": "generative distinguish",
}


def belief_html(conditions: dict[str, Any], paired: dict[str, Any] | None = None) -> str:
    """Implanted-version rates per condition and measurement, the paired differences
    between conditions, then the rates per fact."""
    blocks = {c: b["belief"] for c, b in conditions.items() if "belief" in b}
    if not blocks:
        return ""
    metrics = [m for m in BELIEF_LABELS if any(m in b for b in blocks.values())]
    header = ["condition", *[BELIEF_LABELS[m] for m in metrics]]
    rows = [
        [c, *[fmt_interval((b.get(m) or {}).get("implanted_rate")) for m in metrics]]
        for c, b in blocks.items()
    ]
    facts = list(
        dict.fromkeys(f for b in blocks.values() for m in b.values() for f in m["per_fact"])
    )
    fact_rows = [
        [c, fact, *[fmt_interval((b.get(m) or {}).get("per_fact", {}).get(fact)) for m in metrics]]
        for c, b in blocks.items()
        for fact in facts
    ]
    extra = [
        [
            c,
            fmt_interval((b.get("open_belief") or {}).get("truth_rate")),
            fmt_interval((b.get("generative_distinguish") or {}).get("answered_rate")),
        ]
        for c, b in blocks.items()
    ]
    seeds = max((b.get("seeds") or 1) for b in conditions.values())
    method = "Wilson 95% CI" if seeds == 1 else "95% CI: percentile bootstrap over seeds and items"
    note = (
        "Share of trials choosing or producing the implanted version of the world's facts "
        f"({method}). MCQ knowledge: implanted answer against distractors; MCQ "
        "distinguish: implanted against true answer; open-ended: sampled continuations of the "
        "fact's prompt containing implanted and no true keywords; generative distinguish: "
        "sampled answers naming the implanted statement when shown both."
    )
    diffs = [
        [pair, *[fmt_interval(d["belief_implanted_rate"].get(m)) for m in metrics]]
        for pair, d in (paired or {}).items()
        if d.get("belief_implanted_rate")
    ]
    diff_note = (
        "Paired differences of the implanted rate (first condition minus second) on the same "
        "items (each question, or the k-th sample of a fact's prompt): percentile bootstrap "
        "95% CI resampling items jointly and each side's seeds. Items are trials of these "
        "facts, not a sample of facts."
    )
    diff_html = (
        "<h3>Differences between conditions</h3>\n"
        + html_table(["difference", *header[1:]], diffs, "belief-differences")
        + f"\n<p>{html.escape(diff_note)}</p>\n"
        if diffs
        else ""
    )
    return (
        "<h2>Belief in implanted facts</h2>\n"
        + html_table(header, rows, "belief")
        + f"\n<p>{html.escape(note)}</p>\n"
        + diff_html
        + html_table(
            ["condition", "open-ended: true-version rate", "generative: answered rate"],
            extra,
            "belief-extra",
        )
        + "\n<h3>Per fact</h3>\n"
        + html_table(["condition", "fact", *header[1:]], fact_rows, "belief-facts")
    )


def probe_html(results: dict[str, Any]) -> str:
    """Probe accuracy against the shuffled-label baseline per condition, stage and layer."""
    rows = []
    for condition, block in results.get("conditions", {}).items():
        probe = block.get("probe") or {}
        for layer, iv in probe.get("layers", {}).items():
            rows.append(_probe_row(condition, "pretrained", layer, iv, probe.get("bow_accuracy")))
    for condition, by_stage in (results.get("probe_posttrain") or {}).items():
        for stage, summary in by_stage.items():
            for layer, iv in summary["layers"].items():
                rows.append(_probe_row(condition, stage, layer, iv, summary.get("bow_accuracy")))
    if not rows:
        return ""
    source = results.get("probe_organic_source", "")
    note = (
        "Cross-validated logistic regression on mean-pooled hidden states separating held-out "
        "synthetic passages from organic ones (folds keep each source file or document on one "
        "side); accuracy and shuffled-label accuracy with Wilson 95% CIs (one seed; several: "
        "bootstrap over seeds and held-out documents); p: share of shuffled runs at least as "
        "accurate (+1 smoothed). Bag of words: TF-IDF of word unigrams and bigrams of the same "
        "passages (what the model reads), logistic regression, same folds; mean-pooled layer-0 "
        "states are a linear map of token counts, so a layer that does not beat it is reading "
        "vocabulary. layer − BoW: paired bootstrap 95% CI over held-out documents. "
        f"Organic text: {source}."
    )
    if source == "generated_background":
        note += (
            " No organic files were given: the organic class is generated everyday text, so "
            "this probe separates topics, not synthetic from organic."
        )
    header = [
        "condition",
        "model",
        "layer",
        "accuracy",
        "bag of words",
        "layer − BoW",
        "shuffled labels",
        "p",
    ]
    return (
        "<h2>Synthetic-vs-organic probe</h2>\n"
        + html_table(header, rows, "probe")
        + f"\n<p>{html.escape(note)}</p>\n"
    )


def _probe_row(condition: str, model: str, layer: str, block: dict, bow: dict | None) -> list[str]:
    return [
        condition,
        model,
        layer,
        fmt_interval(block["accuracy"]),
        fmt_interval(bow),
        fmt_interval(block.get("layer_minus_bow")),
        fmt_interval(block["shuffled_accuracy"]),
        f"{block['p_shuffled']:.3f}",
    ]


def beliefs_html(results: dict[str, Any]) -> str:
    """Every belief-related section whose data are in ``results``."""
    return (
        personas_html(results.get("personas") or {})
        + belief_html(results.get("conditions") or {}, results.get("paired_differences"))
        + probe_html(results)
    )


def _probe_rows(condition: str, prefix: str, probe: dict) -> Iterator[tuple[str, str, str, dict]]:
    """CSV rows of one probe summary: per layer, the probe, bag-of-words and shuffled-label
    accuracies and the layer - BoW difference."""
    for layer, b in probe.get("layers", {}).items():
        split = f"{prefix}layer:{layer}"
        yield condition, "probe_accuracy", split, b["accuracy"]
        if probe.get("bow_accuracy"):
            yield condition, "probe_bow_accuracy", split, probe["bow_accuracy"]
        if b.get("layer_minus_bow"):
            yield condition, "probe_layer_minus_bow", split, b["layer_minus_bow"]
        yield condition, "probe_shuffled_accuracy", split, b["shuffled_accuracy"]


def belief_metric_rows(results: dict[str, Any]) -> Iterator[tuple[str, str, str, dict]]:
    """CSV rows: belief rates (split ``overall`` or ``fact:<name>``), probe accuracies (split
    ``layer:<n>`` or ``<stage>:layer:<n>``), and per condition the pooled persona defection
    rates (Wilson) and, without an interval (exact given the counts), each hypothesis's
    posterior log-odds in bits."""
    for condition, block in (results.get("conditions") or {}).items():
        for metric, b in (block.get("belief") or {}).items():
            yield condition, f"belief_{metric}_implanted_rate", "overall", b["implanted_rate"]
            for fact, iv in b["per_fact"].items():
                yield condition, f"belief_{metric}_implanted_rate", f"fact:{fact}", iv
        yield from _probe_rows(condition, "", block.get("probe") or {})
    for condition, by_stage in (results.get("probe_posttrain") or {}).items():
        for stage, summary in by_stage.items():
            yield from _probe_rows(condition, f"{stage}:", summary)
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
