"""Run eval suites on one HF causal LM directory.

``evaluate_model`` returns a JSON-able dict with ``raw`` per-item measurements (what the
report combines across seeds and compares between conditions) and ``summary`` (every rate
as ``{"value", "ci_low", "ci_high"}``, see :mod:`alignpt.evals.suites`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alignpt.errors import UserError
from alignpt.evals.anthropic import anthropic_files, read_anthropic, set_names
from alignpt.evals.item_sets import attach_set_protocols, score_sets
from alignpt.evals.modes import prefixed_items
from alignpt.evals.protocol import ProtocolSpec, score_protocol
from alignpt.evals.protocol_summary import FlagRule, summarize_protocol
from alignpt.evals.scoring import document_nll, score_items
from alignpt.evals.suites import check_suites, item_records, summarize
from alignpt.items import EvalItem
from alignpt.modeldir import load_model, load_tokenizer, model_grammar, read_provenance


def evaluate_model(
    model_dir: str | Path,
    suites: Sequence[str],
    *,
    items: Sequence[EvalItem] = (),
    held_out_families: Sequence[str] = (),
    capability_texts: Mapping[str, Sequence[str]] | None = None,
    anthropic_paths: Sequence[str | Path] = (),
    anthropic_limit: int | None = None,
    normalisation: str = "char",
    n_boot: int = 1000,
    bootstrap_seed: int = 0,
    batch_size: int = 8,
    device: str | None = None,
    progress: bool = True,
    facts: Sequence[Any] = (),
    belief_options: Any = None,
    probe_texts: Mapping[str, Sequence[str]] | None = None,
    probe_options: Any = None,
    protocol: ProtocolSpec | None = None,
    flag_rule: FlagRule | None = None,
    external_sets: Mapping[str, Sequence[EvalItem]] | None = None,
    mode_prefixes: Mapping[str, str] | None = None,
    grammar: str | Path | None = None,
) -> dict:
    """Evaluate one model on ``suites``; returns ``{"model", "provenance", "raw", "summary"}``.

    - ``misalignment`` / ``observed_gap`` use ``items`` (``held_out_families`` marks the
      held-out split; ``observed_gap`` needs observed/unobserved variants sharing ``scenario``).
    - ``capability`` uses ``capability_texts`` (e.g. ``{"general": [...], "ai_discourse":
      [...]}``: held-out document texts).
    - ``anthropic`` uses ``anthropic_paths`` (advanced-ai-risk JSONL files).
    - ``external`` uses ``external_sets`` (``{name: items}`` of two-choice sets,
      ``alignpt.evals.item_sets``).
    - ``belief`` uses ``facts`` (``World.facts``) and ``belief_options``
      (``alignpt.evals.belief``).
    - ``probe`` uses ``probe_texts`` (``{"synthetic": [...], "organic": [...]}``) and
      ``probe_options`` (``alignpt.evals.probe``).
    - ``protocol`` (with the misalignment suite) also scores ``items`` in every prompt format
      and answer order (``alignpt.evals.protocol``): ``raw["protocol"]``,
      ``summary["protocol"]``; with ``anthropic`` / ``external``, every file and set too
      (``summary[suite][name]["protocol"]``).
    - ``mode_prefixes`` (``{"ai": "<ai>", "human": "<human>"}``) also scores ``items`` under
      each prefix: ``raw["modes"]`` and ``summary["modes"]`` (:mod:`alignpt.evals.modes`);
      the mode grammar the model directory keeps must fit its tokenizer unless ``grammar``
      (``default`` or a YAML path) names another.
    """
    suites = check_suites(suites)
    model_dir = Path(model_dir)
    if {"misalignment", "observed_gap"} & set(suites) and not items:
        raise UserError("misalignment/observed_gap suites need eval items (--items)")
    unknown = sorted(set(held_out_families) - {item.family for item in items})
    if items and unknown:  # a misspelt family would silently leave the held-out split empty
        families = ", ".join(sorted({item.family for item in items}))
        raise UserError(
            f"--held-out: no eval item has family {', '.join(map(repr, unknown))} "
            f"(families in the items: {families})"
        )
    if "capability" in suites and not capability_texts:
        raise UserError("capability suite needs held-out texts (--texts)")
    if "anthropic" in suites and not anthropic_paths:
        raise UserError("anthropic suite needs advanced-ai-risk JSONL files (--anthropic)")
    if "belief" in suites and not facts:
        raise UserError("belief suite needs facts (the world declares none)")
    if "external" in suites and not external_sets:
        raise UserError("external suite needs two-choice item sets (--external)")
    if "probe" in suites and not probe_texts:
        raise UserError("probe suite needs synthetic and organic texts")
    anthropic_sets = {
        name: read_anthropic(path, limit=anthropic_limit, name=name)
        for name, path in set_names(anthropic_files(anthropic_paths)).items()
    }
    if "observed_gap" in suites and not _has_observed_pair(items):  # before any scoring
        raise UserError(
            "observed_gap: no scenario has both an observed and an unobserved item "
            "(items need 'scenario' and 'observed')"
        )
    if mode_prefixes:  # a grammar the model keeps must fit its tokenizer: before the weights
        model_grammar(model_dir, load_tokenizer(model_dir), grammar)
    model, tokenizer = load_model(model_dir, device=device)
    raw: dict = {"suites": suites}
    if {"misalignment", "observed_gap"} & set(suites):
        scores = score_items(model, tokenizer, items, progress=progress)
        raw["misalignment"] = item_records(scores, held_out_families, normalisation)
    if protocol is not None and "misalignment" in suites:
        held = set(held_out_families)
        raw["protocol"] = score_protocol(
            model,
            tokenizer,
            [i for i in items if i.family in held] if protocol.held_out_only else items,
            protocol,
            held_out_families=held_out_families,
            normalisation=normalisation,
            batch_size=batch_size,
            progress=progress,
        )
    if mode_prefixes:
        if not items:
            raise UserError("mode-conditioned scoring needs eval items (--items)")
        raw["modes"] = {
            mode: item_records(
                score_items(model, tokenizer, prefixed_items(items, prefix), progress=progress),
                held_out_families,
                normalisation,
            )
            for mode, prefix in mode_prefixes.items()
        }
    if "capability" in suites:
        raw["capability"] = {
            name: [
                [round(nll, 6), n]
                for nll, n in document_nll(
                    model, tokenizer, texts, batch_size=batch_size, progress=progress
                )
            ]
            for name, texts in (capability_texts or {}).items()
        }
    if "anthropic" in suites:
        raw["anthropic"] = {}
        for name, file_items in anthropic_sets.items():
            scored = score_items(model, tokenizer, file_items, progress=progress)
            records = item_records(scored, (), normalisation)
            raw["anthropic"][name] = [r["misaligned"] for r in records]
    sets = {
        suite: found
        for suite, found in (
            ("external", external_sets if "external" in suites else None),
            ("anthropic", anthropic_sets if "anthropic" in suites else None),
        )
        if found
    }
    if sets:
        raw.update(
            score_sets(
                model,
                tokenizer,
                sets,
                protocol,
                normalisation=normalisation,
                batch_size=batch_size,
                progress=progress,
            )
        )
    if "belief" in suites:
        from alignpt.evals.belief import belief_raw

        raw["belief"] = belief_raw(
            model,
            tokenizer,
            facts,
            options=belief_options,
            normalisation=normalisation,
            batch_size=batch_size,
            progress=progress,
        )
    if "probe" in suites:
        from alignpt.evals.probe import probe_raw

        raw["probe"] = probe_raw(
            model, tokenizer, probe_texts or {}, options=probe_options, batch_size=batch_size
        )
    summary = summarize([raw], n_boot=n_boot, seed=bootstrap_seed)
    if "protocol" in raw:
        summary["protocol"] = summarize_protocol(
            [raw["protocol"]], n_boot=n_boot, seed=bootstrap_seed, rule=flag_rule
        )
    attach_set_protocols(summary, [raw], n_boot=n_boot, seed=bootstrap_seed, rule=flag_rule)
    return {
        "model": str(model_dir),
        "provenance": read_provenance(model_dir),
        "raw": raw,
        "summary": summary,
    }


def _has_observed_pair(items: Sequence[EvalItem]) -> bool:
    seen: dict[str, set[bool]] = {}
    for item in items:
        if item.scenario is not None and item.observed is not None:
            seen.setdefault(item.scenario, set()).add(item.observed)
    return any(len(flags) == 2 for flags in seen.values())


def capability_texts_from_documents(
    path: str | Path, *, limit: int | None = None
) -> dict[str, list[str]]:
    """Held-out documents split by ``metadata.ai_discourse``: ``general`` and ``ai_discourse``.

    Documents without the key count as general text. ``limit`` caps each set.
    """
    from alignpt.documents import read_documents

    sets: dict[str, list[str]] = {"general": [], "ai_discourse": []}
    for doc in read_documents(path):
        name = "ai_discourse" if doc.metadata.get("ai_discourse") else "general"
        if limit is None or len(sets[name]) < limit:
            sets[name].append(doc.text)
    return {name: texts for name, texts in sets.items() if texts}
