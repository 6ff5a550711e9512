"""Combine per-seed evaluations into the experiment's ``results.json`` structure.

Schema (``alignpt.results/1``)::

    {"schema": "alignpt.results/1",
     "baseline": str | null,
     "conditions": {condition: {
         "seeds": int, "models": [model dirs],
         "misalignment_rate": I, "bits": I,            # overall (all items)
         "held_out": {"misalignment_rate": I, "bits": I, "n": int},   # held-out families
         "training": {...same...},                     # families seen in training data
         "per_family": {family: {"misalignment_rate": I, "bits": I, "n": int}},
         "observed_gap": {"misalignment_rate": I, "bits": I, "n_pairs": int},
         "capability": {text_set: {"perplexity": I, "n_docs": int, "n_tokens": int}},
         "anthropic": {file: {"matching_rate": I, "n": int, "protocol": {...}}},
         "external": {set: {"misalignment_rate": I, "bits": I, "n": int,
                            "per_split": {split: {...}}, "protocol": {...}}},
         "protocol": {...}}},   # formats x answer orders: alignpt.evals.protocol_summary
     "paired_differences": {"<condition> - <baseline>": {
         "misalignment_rate": I, "bits": I, "held_out_misalignment_rate": I,
         "held_out_bits": I, "perplexity_ratio": {text_set: I},
         "belief_implanted_rate": {metric: I + {"n_items"}}}},   # also "<a> - <b>" of evals.compare
     "contamination": {condition: {eval_set: {"n", "items", "contaminated", "share", ...}}},
     "provenance": {...}}

where ``I = {"value", "ci_low", "ci_high"}`` (95% percentile bootstrap over items, and over
seeds when a condition has several). Sections whose suite was not run are absent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from alignpt.analysis.stats import interval, paired_difference
from alignpt.errors import UserError
from alignpt.evals.item_sets import attach_set_protocols
from alignpt.evals.protocol_summary import FlagRule, summarize_protocol
from alignpt.evals.suites import NORMALISATIONS, summarize

SCHEMA = "alignpt.results/1"


def condition_block(
    evaluations: Sequence[dict],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    flag_rule: FlagRule | None = None,
) -> dict:
    """One condition's results from its evaluations (one per training seed)."""
    if not evaluations:
        raise UserError("a condition has no evaluated models")
    summary = summarize([e["raw"] for e in evaluations], n_boot=n_boot, seed=seed)
    block: dict = {"seeds": len(evaluations), "models": [e["model"] for e in evaluations]}
    if "misalignment" in summary:
        mis = summary["misalignment"]
        block["misalignment_rate"] = mis["overall"]["misalignment_rate"]
        block["bits"] = mis["overall"]["bits"]
        block["n_items"] = mis["overall"]["n"]
        for split in ("held_out", "training"):
            if split in mis:
                block[split] = mis[split]
        block["per_family"] = mis["per_family"]
    for key in ("observed_gap", "capability", "anthropic", "external", "belief", "probe", "modes"):
        if key in summary:
            block[key] = summary[key]
    if all("protocol" in e["raw"] for e in evaluations):
        block["protocol"] = summarize_protocol(
            [e["raw"]["protocol"] for e in evaluations],
            n_boot=n_boot,
            seed=seed,
            rule=flag_rule,
        )
    attach_set_protocols(
        block, [e["raw"] for e in evaluations], n_boot=n_boot, seed=seed, rule=flag_rule
    )
    return block


def _by_id(evaluations: Sequence[dict], key: str | Callable, keep) -> dict[str, list[float]]:
    value_of = key if callable(key) else (lambda r: r[key])
    values: dict[str, list[float]] = {}
    for e in evaluations:
        for r in e["raw"].get("misalignment", []):
            if keep(r):
                values.setdefault(r["id"], []).append(value_of(r))
    return values


def _paired_items(
    a: Sequence[dict], b: Sequence[dict], key: str | Callable, keep, n_boot: int, seed: int
) -> dict | None:
    va, vb = _by_id(a, key, keep), _by_id(b, key, keep)
    ids = [i for i in va if i in vb]
    if not ids:
        return None
    ma = np.asarray([va[i] for i in ids], dtype=float).T  # seeds x items
    mb = np.asarray([vb[i] for i in ids], dtype=float).T
    return paired_difference(ma, mb, n_boot=n_boot, seed=seed)


def _ppl_ratio(da: np.ndarray, db: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Perplexity ratio for each row of resampled document indices."""
    pa = np.exp(da[rows, 0].sum(-1) / da[rows, 1].sum(-1))
    pb = np.exp(db[rows, 0].sum(-1) / db[rows, 1].sum(-1))
    return pa / pb


def _perplexity_ratio(a: Sequence[dict], b: Sequence[dict], n_boot: int, seed: int) -> dict:
    """Perplexity of ``a`` over ``b`` on the same documents (bootstrap over documents)."""
    out = {}
    if "capability" not in a[0]["raw"] or "capability" not in b[0]["raw"]:
        return out
    for name in a[0]["raw"]["capability"]:
        if name not in b[0]["raw"]["capability"]:
            continue
        da = np.asarray([e["raw"]["capability"][name] for e in a], dtype=float).sum(axis=0)
        db = np.asarray([e["raw"]["capability"][name] for e in b], dtype=float).sum(axis=0)
        if da.shape != db.shape or da.size == 0:
            continue
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, da.shape[0], size=(n_boot, da.shape[0]))
        boots = _ppl_ratio(da, db, idx)
        value = float(_ppl_ratio(da, db, np.arange(da.shape[0])[None, :])[0])
        low, high = np.percentile(boots, [2.5, 97.5])
        out[name] = interval(value, float(low), float(high))
    return out


def paired_block(
    a: Sequence[dict], b: Sequence[dict], *, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Differences ``a - b`` on the same items (and the perplexity ratio ``a / b``)."""
    block: dict = {}
    for key, name in (("misaligned", "misalignment_rate"), ("bits", "bits")):
        overall = _paired_items(a, b, key, lambda r: True, n_boot, seed)
        if overall is not None:
            block[name] = overall
        held = _paired_items(a, b, key, lambda r: r["held_out"], n_boot, seed)
        if held is not None:
            block[f"held_out_{name}"] = held
    records = a[0]["raw"].get("misalignment") or []
    if records and "by_normalisation" in records[0]:  # the surface checks of the held-out effect
        held_out = lambda r: r["held_out"]  # noqa: E731
        by_norm = {
            norm: _paired_items(
                a, b, lambda r, n=norm: r["by_normalisation"][n], held_out, n_boot, seed
            )
            for norm in NORMALISATIONS
        }
        if all(v is not None for v in by_norm.values()):
            block["held_out_misalignment_rate_by_normalisation"] = by_norm
            block["held_out_misalignment_rate_options_reversed"] = _paired_items(
                a, b, "misaligned_reversed", held_out, n_boot, seed
            )
    ratio = _perplexity_ratio(a, b, n_boot, seed)
    if ratio:
        block["perplexity_ratio"] = ratio
    if all("belief" in e["raw"] for e in (*a, *b)):
        from alignpt.evals.belief import paired_belief

        belief = paired_belief(
            [e["raw"]["belief"] for e in a],
            [e["raw"]["belief"] for e in b],
            n_boot=n_boot,
            seed=seed,
        )
        if belief:
            block["belief_implanted_rate"] = belief
    return block


def build_results(
    conditions: Mapping[str, Sequence[dict]],
    *,
    baseline: str | None = None,
    contamination: Mapping[str, dict] | None = None,
    provenance: Mapping | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    flag_rule: FlagRule | None = None,
    compare: Sequence[Sequence[str]] = (),
) -> dict:
    """The experiment results (see module docstring) from ``condition -> [evaluate_model()]``;
    ``compare`` adds ``a - b`` paired differences besides each condition's against the
    baseline."""
    if baseline is not None and baseline not in conditions:
        raise UserError(f"baseline condition '{baseline}' was not evaluated")
    results = {
        "schema": SCHEMA,
        "baseline": baseline,
        "conditions": {
            name: condition_block(evals, n_boot=n_boot, seed=seed, flag_rule=flag_rule)
            for name, evals in conditions.items()
        },
        "paired_differences": {},
        "contamination": dict(contamination or {}),
        "provenance": dict(provenance or {}),
    }
    if baseline is not None:
        for name, evals in conditions.items():
            if name != baseline:
                results["paired_differences"][f"{name} - {baseline}"] = paired_block(
                    evals, conditions[baseline], n_boot=n_boot, seed=seed
                )
    for a, b in compare:
        for name in (a, b):
            if name not in conditions:
                raise UserError(f"evals.compare: condition '{name}' was not evaluated")
        results["paired_differences"][f"{a} - {b}"] = paired_block(
            conditions[a], conditions[b], n_boot=n_boot, seed=seed
        )
    return results
