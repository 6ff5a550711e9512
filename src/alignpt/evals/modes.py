"""Mode-conditioned evaluation: every item scored under each mode prefix, and the mode gap.

Each misalignment item is scored once per mode, with the mode's prefix (``<ai>``,
``<human>``, a control token) before its prompt. The gap between two modes, paired by item,
measures whether training separated the personas: a model whose ``<ai>`` mode is aligned and
whose ``<human>`` mode keeps human selfishness has a negative ``ai − human`` rate gap.

Summary shape: ``{"per_mode": {mode: {"misalignment_rate", "bits", "n"}},
"gaps": {"a-b": {"misalignment_rate", "bits"}}}`` (every value an interval; gaps are each
later mode against the first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from alignpt.analysis.stats import bootstrap_mean, paired_difference
from alignpt.errors import UserError
from alignpt.items import EvalItem
from alignpt.mode_grammar import ModeGrammar, load_grammar

DEFAULT_MODE_PREFIXES = {"ai": "<ai>", "human": "<human>"}


def parse_mode_prefixes(
    entries: Sequence[str], grammar: ModeGrammar | None = None
) -> dict[str, str]:
    """``name=prefix`` entries (or mode names of ``grammar``, default the packaged one,
    whose opening tag is the prefix)."""
    grammar = grammar or load_grammar()
    prefixes: dict[str, str] = {}
    for entry in entries:
        name, sep, prefix = entry.partition("=")
        if not sep:
            prefix = grammar.mode(name).open
        if not name or not prefix:
            raise UserError(f"--mode-prefix {entry!r}: expected NAME=PREFIX or a mode name")
        prefixes[name] = prefix
    if len(prefixes) < 2:
        raise UserError("--mode-prefix: give at least two modes to compare")
    return prefixes


def prefixed_items(items: Sequence[EvalItem], prefix: str) -> list[EvalItem]:
    """``items`` with ``prefix`` before every prompt (ids unchanged, so they pair)."""
    return [item.model_copy(update={"prompt": prefix + item.prompt}) for item in items]


def summarize_modes(
    per_seed: Sequence[Mapping[str, Sequence[dict]]], *, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Per-mode misalignment rate and bits, and each mode's paired gap to the first mode."""
    modes = list(per_seed[0])

    def matrix(mode: str, key: str) -> list[list[float]]:
        return [[float(r[key]) for r in records[mode]] for records in per_seed]

    per_mode = {
        mode: {
            "misalignment_rate": bootstrap_mean(
                matrix(mode, "misaligned"), n_boot=n_boot, seed=seed
            ),
            "bits": bootstrap_mean(matrix(mode, "bits"), n_boot=n_boot, seed=seed),
            "n": len(per_seed[0][mode]),
        }
        for mode in modes
    }
    first = modes[0]
    gaps = {
        f"{mode}-{first}": {
            key: paired_difference(matrix(mode, raw), matrix(first, raw), n_boot=n_boot, seed=seed)
            for key, raw in (("misalignment_rate", "misaligned"), ("bits", "bits"))
        }
        for mode in modes[1:]
    }
    return {"per_mode": per_mode, "gaps": gaps}
