"""The report's curate section: what each curated source kept, dropped, tagged, upsampled."""

from __future__ import annotations

import html

from alignpt.experiment.render import html_table

HEADLINE = (
    "documents",
    "ai_discourse",
    "kept",
    "dropped",
    "tagged",
    "disclosed",
    "upsampled_copies",
    "refill_copies",
)


def curate_html(results: dict) -> str:
    """A headline table per source and a table of every step's labels; '' without curation."""
    curate = results.get("curate") or {}
    if not curate:
        return ""
    headline = [
        [
            source,
            *(f"{int(block['counts'].get(k, 0)):,}" for k in HEADLINE),
            str(block.get("bad_lines", 0)),
        ]
        for source, block in curate.items()
    ]
    details = [
        [source, step, label, f"{value:,.0f}" if float(value).is_integer() else f"{value}"]
        for source, block in curate.items()
        for step, labels in block.get("stats", {}).items()
        for label, value in labels.items()
    ]
    return (
        "<h2>Curated sources</h2>"
        + html_table(["source", *HEADLINE, "bad lines"], headline, "curate")
        + "<details><summary>Per step, category and term list</summary>"
        + html_table(["source", "step", "label", "value"], details, "curate-stats")
        + "</details>"
        + f"<p>{html.escape('From the curate manifests (runs/<name>/curate/).')}</p>"
    )
