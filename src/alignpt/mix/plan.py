"""Conditions and phases: which documents of which shard, how many times, in which stream.

For each condition and phase the plan is a multiset of ``(source, document)`` entries whose
tokens sum to the phase's token budget, honouring filters, upsampling, weights and doses
(semantics in ``src/alignpt/mix/README.md``). The order of the entries is drawn per epoch by
the loader, so plans are small (two integers per document) and tokens are never copied.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alignpt.config import ConditionConfig, ConditionSource, MixSpec
from alignpt.errors import UserError
from alignpt.mixdir import PLAN_ARRAYS
from alignpt.seeds import named_rng
from alignpt.shards import Shard

PHASES = ("pretrain", "late", "finetune")
_MISSING = object()


@dataclass
class SourceTable:
    """A shard's per-document lengths and the metadata columns planning needs.

    Only the keys conditions refer to (plus ``stance`` and ``era``) are kept, one list per
    key, so planning memory grows with documents x referenced keys, not with metadata size.
    """

    name: str
    shard: Shard
    columns: dict[str, list[Any]] = field(default_factory=dict)
    known_keys: set[str] = field(default_factory=set)
    size: int = 0

    @classmethod
    def load(cls, name: str, shard: Shard, keys: set[str] | None = None) -> SourceTable:
        """Read the shard's metadata once, keeping ``keys`` (default: every key)."""
        table = cls(name, shard)
        wanted = None if keys is None else {"stance", "era", *keys}
        for index, meta in enumerate(shard.metadata()):
            table.known_keys.update(meta)
            for key in meta if wanted is None else wanted & meta.keys():
                column = table.columns.setdefault(key, [_MISSING] * index)
                column.append(meta[key])
            for column in table.columns.values():
                if len(column) == index:
                    column.append(_MISSING)
            table.size = index + 1
        return table

    @property
    def lengths(self) -> np.ndarray:
        return self.shard.doc_lengths

    def column(self, key: str) -> list[Any]:
        return self.columns.get(key, [_MISSING] * self.size)

    def matches(self, where: dict[str, Any], field_name: str) -> np.ndarray:
        """Boolean mask of the documents whose metadata match every key of ``where``."""
        for key in where:
            if key not in self.known_keys:
                raise UserError(
                    f"{field_name}: metadata key '{key}' appears in no document of source "
                    f"'{self.name}' (known: {', '.join(sorted(self.known_keys))})"
                )
        mask = np.ones(self.size, dtype=bool)
        for key, value in where.items():
            accepted = value if isinstance(value, list) else [value]
            mask &= np.fromiter(
                (v is not _MISSING and v in accepted for v in self.column(key)),
                dtype=bool,
                count=self.size,
            )
        return mask

    def stance_codes(self) -> tuple[list[str], np.ndarray]:
        stances = ["unknown" if v is _MISSING else str(v) for v in self.column("stance")]
        names = sorted(set(stances))
        lookup = {name: i for i, name in enumerate(names)}
        return names, np.array([lookup[s] for s in stances], dtype=np.int64)

    def eras(self, field_name: str) -> np.ndarray:
        values = self.column("era")
        missing = sum(not isinstance(v, int | float) or isinstance(v, bool) for v in values)
        if missing:
            raise UserError(
                f"{field_name}: order 'chronological' needs a numeric 'era' on every document; "
                f"{missing} document(s) of source '{self.name}' have none"
            )
        return np.asarray(values, dtype=np.float64)


def referenced_keys(config: MixSpec, source: str) -> set[str]:
    """Metadata keys any condition's filters or ``upsample_where`` use on ``source``."""
    keys: set[str] = set()
    for cond in config.conditions.values():
        spec = cond.sources.get(source)
        if spec is None:
            continue
        for flt in spec.filters:
            keys.update(flt.drop)
        keys.update(spec.upsample_where or {})
    return keys


def source_pool(table: SourceTable, spec: ConditionSource, where: str) -> np.ndarray:
    """Document indices of a source in a condition after filters and upsampling (with repeats)."""
    keep = np.ones(table.size, dtype=bool)
    for i, flt in enumerate(spec.filters):
        keep &= ~table.matches(flt.drop, f"{where}.filters.{i}.drop")
    copies = keep.astype(np.int64)
    if spec.upsample > 1:
        chosen = (
            table.matches(spec.upsample_where, f"{where}.upsample_where")
            if spec.upsample_where
            else np.ones_like(keep)
        )
        copies[keep & chosen] = spec.upsample
    return np.repeat(np.arange(len(copies), dtype=np.int64), copies)


def phase_budgets(config: MixSpec, cname: str, cond: ConditionConfig) -> dict[str, int]:
    """Token budget of each phase the condition has, in order."""
    phases = {spec.phase for spec in cond.sources.values()}
    where = f"conditions.{cname}"
    if "pretrain" not in phases:
        raise UserError(f"{where}.sources: needs at least one source with phase 'pretrain'")
    train = config.budget
    budgets: dict[str, int] = {}
    if "late" in phases:
        if train.late_fraction <= 0:
            raise UserError(f"{where}: has 'late' sources but train.late_fraction is 0")
        late = round(train.tokens * train.late_fraction)
        budgets["pretrain"] = train.tokens - late
        budgets["late"] = late
    else:
        budgets["pretrain"] = train.tokens
    if "finetune" in phases:
        if train.finetune_tokens <= 0:
            raise UserError(f"{where}: has 'finetune' sources but train.finetune_tokens is 0")
        budgets["finetune"] = train.finetune_tokens
    return budgets


def stream_sources(cond: ConditionConfig, phase: str) -> list[str]:
    """Sources read in a phase: late = pretrain + late sources; others their own."""
    wanted = {"pretrain": {"pretrain"}, "late": {"pretrain", "late"}, "finetune": {"finetune"}}
    return sorted(name for name, spec in cond.sources.items() if spec.phase in wanted[phase])


def stream_shares(
    cname: str,
    cond: ConditionConfig,
    phase: str,
    budgets: dict[str, int],
    pool_tokens: dict[str, int],
) -> dict[str, float]:
    """Share of the phase's tokens for each source of the stream (sums to 1)."""
    where = f"conditions.{cname}"
    names = stream_sources(cond, phase)
    fixed: dict[str, float] = {}
    for name in names:
        spec = cond.sources[name]
        if spec.dose_share is not None:
            fixed[name] = spec.dose_share
        elif spec.dose_tokens is not None:
            fixed[name] = spec.dose_tokens / budgets[spec.phase]
    total_fixed = sum(fixed.values())
    if total_fixed > 1 + 1e-9:
        raise UserError(
            f"{where}: doses of the {phase} stream add up to {total_fixed:.3f} of its "
            f"{budgets[phase]} tokens (more than all of it)"
        )
    free = [name for name in names if name not in fixed]
    if not free:
        if total_fixed < 1 - 1e-9:
            raise UserError(
                f"{where}: doses of the {phase} stream add up to {total_fixed:.3f}; "
                "give another source a weight to fill the rest"
            )
        return fixed
    weighted = [name for name in free if cond.sources[name].weight is not None]
    if weighted and len(weighted) != len(free):
        unweighted = sorted(set(free) - set(weighted))
        raise UserError(
            f"{where}.sources: the {phase} stream mixes weighted and unweighted sources "
            f"({', '.join(unweighted)} have no weight); give a weight to all or none"
        )
    raw = {
        name: (cond.sources[name].weight if weighted else pool_tokens[name]) or 0.0 for name in free
    }
    mass = sum(raw.values())
    if mass <= 0:
        what = "weights" if weighted else "sources (after filters)"
        raise UserError(f"{where}.sources: all {what} of the {phase} stream are zero")
    rest = 1.0 - total_fixed
    return {**fixed, **{name: rest * value / mass for name, value in raw.items()}}


def select_tokens(
    pool: np.ndarray, lengths: np.ndarray, target: int, rng: np.random.Generator
) -> np.ndarray:
    """Document entries from ``pool`` whose tokens add up to ``target`` (nearest document).

    Whole passes over the pool first, then a random subset of one more pass.
    """
    pool_tokens = int(lengths[pool].sum())
    if target <= 0 or pool_tokens == 0:
        return np.empty(0, dtype=np.int64)
    passes, remainder = divmod(target, pool_tokens)
    partial = rng.permutation(pool)
    cumulative = np.cumsum(lengths[partial])
    take = int(np.searchsorted(cumulative, remainder, side="right"))
    below = int(cumulative[take - 1]) if take else 0
    if take < len(partial) and cumulative[take] - remainder < remainder - below:
        take += 1
    return np.concatenate([np.tile(pool, int(passes)), partial[:take]])


@dataclass
class PhasePlan:
    """The multiset of one condition's phase, plus what inspection reports about it."""

    sources: list[str]
    chronological: list[bool]
    source: np.ndarray
    doc: np.ndarray
    era: np.ndarray
    summary: dict[str, Any]

    def save(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True)
        for name in PLAN_ARRAYS:
            np.save(out_dir / f"{name}.npy", getattr(self, name), allow_pickle=False)
        info = {"sources": self.sources, "chronological": self.chronological, **self.summary}
        (out_dir / "plan.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def plan_condition(
    config: MixSpec, cname: str, tables: dict[str, SourceTable]
) -> dict[str, PhasePlan]:
    """Plans for every phase of one condition (deterministic from ``config.seed``)."""
    cond = config.conditions[cname]
    budgets = phase_budgets(config, cname, cond)
    pools: dict[str, np.ndarray] = {}
    for name, spec in cond.sources.items():
        pools[name] = source_pool(tables[name], spec, f"conditions.{cname}.sources.{name}")
    pool_tokens = {name: int(tables[name].lengths[pool].sum()) for name, pool in pools.items()}
    plans = {}
    for phase_index, (phase, budget) in enumerate(budgets.items()):
        shares = stream_shares(cname, cond, phase, budgets, pool_tokens)
        names = sorted(shares)
        parts_source, parts_doc, parts_era = [], [], []
        summary: dict[str, Any] = {
            "budget_tokens": budget,
            "target_share": {},
            "tokens_by_source": {},
            "tokens_by_stance": Counter(),
            "documents_by_source": {},
            "epochs_by_source": {},
            "passes_by_source": {},
        }
        for index, name in enumerate(names):
            spec, table = cond.sources[name], tables[name]
            where = f"conditions.{cname}.sources.{name}"
            target = round(shares[name] * budget)
            if target > 0 and pool_tokens[name] == 0:
                raise UserError(f"{where}: filters remove every document of the source")
            if target > pool_tokens[name] and not spec.allow_repeat:
                raise UserError(
                    f"{where}: {target} tokens in the {phase} stream need "
                    f"{target / max(pool_tokens[name], 1):.2f} passes over the source's "
                    f"{pool_tokens[name]} tokens, but allow_repeat is false"
                )
            rng = named_rng(config.seed, cname, phase, name)
            chosen = select_tokens(pools[name], table.lengths, target, rng)
            tokens = int(table.lengths[chosen].sum())
            stance_names, codes = table.stance_codes()
            by_stance = np.bincount(
                codes[chosen], weights=table.lengths[chosen], minlength=len(stance_names)
            )
            for stance, count in zip(stance_names, by_stance, strict=True):
                if count:
                    summary["tokens_by_stance"][stance] += int(count)
            chrono = spec.order == "chronological"
            parts_era.append(
                table.eras(f"{where}.order")[chosen] if chrono else np.zeros(len(chosen))
            )
            parts_source.append(np.full(len(chosen), index, dtype=np.int32))
            parts_doc.append(chosen)
            summary["target_share"][name] = shares[name]
            summary["tokens_by_source"][name] = tokens
            summary["documents_by_source"][name] = len(chosen)
            summary["epochs_by_source"][name] = tokens / max(int(table.lengths.sum()), 1)
            summary["passes_by_source"][name] = tokens / max(pool_tokens[name], 1)
        total = sum(summary["tokens_by_source"].values())
        summary["tokens"] = total
        summary["share_by_source"] = {
            name: count / max(total, 1) for name, count in summary["tokens_by_source"].items()
        }
        summary["tokens_by_stance"] = dict(sorted(summary["tokens_by_stance"].items()))
        summary["phase_index"] = phase_index
        plans[phase] = PhasePlan(
            sources=names,
            chronological=[cond.sources[n].order == "chronological" for n in names],
            source=np.concatenate(parts_source),
            doc=np.concatenate(parts_doc),
            era=np.concatenate(parts_era).astype(np.float64),
            summary=summary,
        )
    return plans
