"""The report's "Modes" section: misalignment per mode prefix, the mode gap, and the
misaligned share of sampled continuations (``evals.mode_prefixes``, ``evals.sampled``)."""

from __future__ import annotations

from collections.abc import Iterator

from alignpt.experiment.render import fmt_interval, html_table


def _modes(results: dict) -> dict[str, dict]:
    return {c: b["modes"] for c, b in results["conditions"].items() if b.get("modes")}


def _sampled(results: dict) -> dict[str, dict]:
    return (results.get("sampled") or {}).get("conditions") or {}


def _how(sampling: dict) -> str:
    """``alignpt sample`` flags of a condition's sampling ("plain" when none)."""
    flags = [f"--{key} {sampling[key]}" for key in ("mode", "control") if sampling.get(key)]
    flags += [f"--ban {entry}" for entry in sampling.get("ban") or []]
    return " ".join(flags) or "plain"


def modes_rows(results: dict) -> Iterator[tuple[str, str, str, dict]]:
    """(condition, metric, split, interval) rows of the section, for ``results.csv``."""
    for cond, block in _modes(results).items():
        for mode, per in block["per_mode"].items():
            for metric in ("misalignment_rate", "bits"):
                yield cond, f"mode_{metric}", f"mode:{mode}", per[metric]
        for gap, diffs in block["gaps"].items():
            for metric in ("misalignment_rate", "bits"):
                yield cond, f"mode_gap_{metric}", f"gap:{gap}", diffs[metric]
    for cond, block in _sampled(results).items():
        for metric in ("misaligned_rate", "aligned_rate", "unclear_share", "misaligned_of_clear"):
            yield cond, f"sampled_{metric}", "sampled", block[metric]


def _mode_table(results: dict) -> str:
    blocks = _modes(results)
    if not blocks:
        return ""
    modes = list(dict.fromkeys(m for b in blocks.values() for m in b["per_mode"]))
    gaps = list(dict.fromkeys(g for b in blocks.values() for g in b["gaps"]))
    header = ["condition", *[f"rate ({m})" for m in modes], *[f"gap {g}" for g in gaps]]
    rows = [
        [
            cond,
            *[fmt_interval((b["per_mode"].get(m) or {}).get("misalignment_rate")) for m in modes],
            *[fmt_interval((b["gaps"].get(g) or {}).get("misalignment_rate")) for g in gaps],
        ]
        for cond, b in blocks.items()
    ]
    note = (
        "<p>Misalignment rate of the held-out and training items scored with each mode "
        "prefix before the prompt (evals.mode_prefixes), and each mode's gap to the first "
        "mode, paired by item (95% bootstrap CI). A negative AI-minus-human gap means the AI "
        "mode chose the aligned option more often than the human mode did.</p>"
    )
    return note + html_table(header, rows, "modes")


def _sampled_table(results: dict) -> str:
    blocks = _sampled(results)
    if not blocks:
        return ""
    header = ["condition", "sampling", "continuations", "misaligned", "unclear"]
    header.append("misaligned of clear")
    rows = [
        [
            cond,
            _how(b.get("sampling") or {}),
            str(b["n"]),
            fmt_interval(b["misaligned_rate"]),
            fmt_interval(b["unclear_share"]),
            fmt_interval(b["misaligned_of_clear"]),
        ]
        for cond, b in blocks.items()
    ]
    sampled = results["sampled"]
    settings = sampled.get("settings") or {}
    note = (
        f"<p>{sampled.get('continuations_per_model', 0)} sampled continuations per model of "
        f"{sampled.get('items', 0)} held-out item prompts ({settings.get('samples_per_item')} "
        f"each; temperature {settings.get('temperature')}, top-p {settings.get('top_p')}, "
        f"{settings.get('max_new_tokens')} new tokens, seed {settings.get('seed')}), graded "
        "misaligned, aligned or unclear by the keyword rules of evals.sampled.rules; shares "
        "with 95% Wilson intervals over every continuation of the condition.</p>"
    )
    return note + html_table(header, rows, "sampled")


def modes_html(results: dict) -> str:
    """The section's HTML ("" when neither measurement ran)."""
    body = _mode_table(results) + _sampled_table(results)
    if not body:
        return ""
    return f"<h2>Modes</h2>\n{body}\n"
