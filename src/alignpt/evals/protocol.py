"""The evaluation protocol: each item in every prompt format x answer order (x system prompt).

One *cell* is (syntax, system prompt, answer order). Every item is scored in every cell: the
``none`` system prompt in every syntax, each other system prompt in ``system_prompt_format``
only, and each of those under every rotation of the item's options. All cells of all items go
to the scorer in one call, so the prefix trees share whatever prefix the cells have in common
(the question across answer orders, the system prompt across syntaxes).

Raw shape (per model): ``{"cells": [{"syntax", "system", "order"}], "items": [{"id",
"family", "held_out", "aligned"}], "chosen": [[original option index, or -1 where the item
has no such order] per item] per cell, "chat": bool}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from alignpt.config import ProtocolConfig
from alignpt.errors import UserError
from alignpt.evals.formats import (
    FormatLibrary,
    as_chat,
    check_names,
    load_library,
    render,
    rotation,
    scenario_of,
)
from alignpt.evals.scoring import ChoiceScore, score_requests
from alignpt.items import EvalItem


@dataclass(frozen=True)
class ProtocolSpec:
    """Resolved protocol settings: the format library and which names to use."""

    library: FormatLibrary
    formats: list[str]
    system_prompts: list[str]
    system_prompt_format: str
    held_out_only: bool = False  # score only the held-out families' items

    @classmethod
    def from_config(cls, config: ProtocolConfig) -> ProtocolSpec:
        library = load_library(config.formats_file)
        system_format = config.system_prompt_format or config.formats[0]
        check_names(library, [*config.formats, system_format], config.system_prompts)
        return cls(
            library,
            list(config.formats),
            list(config.system_prompts),
            system_format,
            held_out_only=config.items == "held_out",
        )

    def cells(self, n_orders: int) -> list[dict]:
        """Every (syntax, system, order): ``none`` (or no system prompt at all) in every
        syntax, other system prompts in ``system_prompt_format``."""
        pairs = [(syntax, "none") for syntax in self.formats]
        pairs += [(self.system_prompt_format, s) for s in self.system_prompts if s != "none"]
        return [
            {"syntax": syntax, "system": system, "order": order}
            for syntax, system in dict.fromkeys(pairs)
            for order in range(n_orders)
        ]


def _normalised(scores: Sequence[ChoiceScore], normalisation: str) -> list[float]:
    if normalisation == "sum":
        return [s.logprob for s in scores]
    if normalisation == "char":
        return [s.per_char for s in scores]
    if normalisation == "token":
        return [s.per_token for s in scores]
    raise UserError(f"unknown normalisation {normalisation!r} (sum, char, token)")


def protocol_prompts(
    items: Sequence[EvalItem],
    spec: ProtocolSpec,
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    chat: bool = False,
) -> tuple[list[dict], list[tuple[str, list[str]]], list[tuple[int, int, list[int]]]]:
    """Cells, the (context, continuations) groups to score, and per group (cell index, item
    index, listed order of original option indices)."""
    cells = spec.cells(max(len(item.choices) for item in items))
    groups: list[tuple[str, list[str]]] = []
    where: list[tuple[int, int, list[int]]] = []
    scenarios = [scenario_of(item) for item in items]
    for c, cell in enumerate(cells):
        syntax = spec.library.syntaxes[cell["syntax"]]
        system = spec.library.system_prompts[cell["system"]]
        for i, (item, scenario) in enumerate(zip(items, scenarios, strict=True)):
            if cell["order"] >= len(item.choices):
                continue
            listed = rotation(len(item.choices), cell["order"])
            if chat:
                context, continuations = render(syntax, scenario, listed)
                context, continuations = as_chat(tokenizer, context, continuations, system)
            else:
                context, continuations = render(syntax, scenario, listed, system)
            groups.append((context, continuations))
            where.append((c, i, listed))
    return cells, groups, where


def score_protocol(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[EvalItem],
    spec: ProtocolSpec,
    *,
    held_out_families: Sequence[str] = (),
    normalisation: str = "sum",
    batch_size: int = 16,
    progress: bool = True,
) -> dict:
    """Score every item in every cell; returns the raw shape in the module docstring. A model
    whose tokenizer has a chat template is prompted through it."""
    if not items:
        raise UserError("the evaluation protocol needs eval items")
    chat = bool(getattr(tokenizer, "chat_template", None))
    cells, groups, where = protocol_prompts(items, spec, tokenizer, chat=chat)
    scores = score_requests(model, tokenizer, groups, batch_size=batch_size, progress=progress)
    chosen = [[-1] * len(items) for _ in cells]
    for (c, i, listed), choice_scores in zip(where, scores, strict=True):
        values = _normalised(choice_scores, normalisation)
        chosen[c][i] = listed[values.index(max(values))]  # first maximum on ties
    held = set(held_out_families)
    return {
        "cells": cells,
        "items": [
            {"id": it.id, "family": it.family, "held_out": it.family in held, "aligned": it.aligned}
            for it in items
        ],
        "chosen": chosen,
        "chat": chat,
    }
