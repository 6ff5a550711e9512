"""Named item sets beside the generated items: external two-choice sets and Anthropic files.

Each set is scored once in its own prompt (the single-format suite) and, with the evaluation
protocol on, in every prompt format x answer order (:mod:`alignpt.evals.protocol`).

Raw shape (per model): ``raw["external"] = {name: [item record]}`` (as
``alignpt.evals.suites.item_records``, ``family`` = the item's split), and
``raw["set_protocol"] = {"external"|"anthropic": {name: protocol raw}}``.
Summary shape: ``summary["external"][name] = {"misalignment_rate", "bits", "n",
"per_split": {split: {...}}, surface checks}`` and ``summary[suite][name]["protocol"]`` (as
``alignpt.evals.protocol_summary.summarize_protocol``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from alignpt.errors import UserError
from alignpt.evals.protocol import ProtocolSpec, score_protocol
from alignpt.evals.protocol_summary import FlagRule, summarize_protocol
from alignpt.evals.scoring import score_items
from alignpt.evals.suites import item_records, summarize_misalignment
from alignpt.items import EvalItem, read_choice_pairs

SET_SUITES = ("external", "anthropic")


def read_external_sets(specs: Sequence[Mapping]) -> dict[str, list[EvalItem]]:
    """``{name: items}`` from ``[{"path", "format"?, "name"?}]`` (``evals.external``); a name
    defaults to the file's stem and must be unique."""
    sets: dict[str, list[EvalItem]] = {}
    for spec in specs:
        items = read_choice_pairs(spec["path"], format=spec.get("format"), name=spec.get("name"))
        name = items[0].source.removeprefix("external/")
        if name in sets:
            raise UserError(f"{spec['path']}: a second external item set named '{name}'")
        sets[name] = items
    return sets


def protocol_items(items: Sequence[EvalItem], suite: str) -> list[EvalItem]:
    """The items the protocol can list: an Anthropic item needs its parsed options."""
    if suite == "anthropic":
        return [item for item in items if "options" in item.metadata]
    return list(items)


def score_sets(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sets: Mapping[str, Mapping[str, Sequence[EvalItem]]],
    protocol: ProtocolSpec | None,
    *,
    normalisation: str,
    batch_size: int,
    progress: bool,
) -> dict:
    """``{"external": {name: records}, "set_protocol": {...}}`` for ``{suite: {name: items}}``
    (the single-format Anthropic scores stay with the ``anthropic`` suite)."""
    raw: dict = {}
    if "external" in sets:
        raw["external"] = {
            name: item_records(
                score_items(model, tokenizer, items, batch_size, progress=progress),
                (),
                normalisation,
            )
            for name, items in sets["external"].items()
        }
    if protocol is not None:
        raw["set_protocol"] = {
            suite: {
                name: score_protocol(
                    model,
                    tokenizer,
                    protocol_items(items, suite),
                    protocol,
                    normalisation=normalisation,
                    batch_size=batch_size,
                    progress=progress,
                )
                for name, items in by_name.items()
                if protocol_items(items, suite)
            }
            for suite, by_name in sets.items()
        }
    return raw


def summarize_external(
    per_seed: Sequence[Mapping[str, list[dict]]], *, n_boot: int, seed: int
) -> dict:
    """Per external set: the single-format rate (with its surface checks) and per split."""
    out = {}
    for name in sorted(per_seed[0]):  # a cached record reads back in sorted order
        summary = summarize_misalignment([s[name] for s in per_seed], n_boot=n_boot, seed=seed)
        block = dict(summary["overall"])
        block["per_split"] = summary["per_family"]
        out[name] = block
    return out


def attach_set_protocols(
    summary: dict,
    raws: Sequence[dict],
    *,
    n_boot: int,
    seed: int,
    rule: FlagRule | None = None,
) -> None:
    """Add ``summary[suite][name]["protocol"]`` for every set every seed scored."""
    if not raws or not all("set_protocol" in raw for raw in raws):
        return
    for suite, by_name in raws[0]["set_protocol"].items():
        for name in by_name:
            if suite in summary and name in summary[suite]:
                summary[suite][name]["protocol"] = summarize_protocol(
                    [raw["set_protocol"][suite][name] for raw in raws],
                    n_boot=n_boot,
                    seed=seed,
                    rule=rule,
                )
