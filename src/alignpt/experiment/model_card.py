"""Model cards: a ``README.md`` in Hugging Face's format for every model a run trains.

The card opens with YAML front matter (``license``, ``library_name: transformers``, ``tags``,
``pipeline_tag`` and a ``model-index`` holding the evaluation results, which the Hub shows as
an evaluation table), then says in prose and tables what the model is: its condition and data
mix, tokens seen, parent model, and every result with its 95% interval. ``alignpt run``
writes the cards after evaluation (and post-training) from ``results.json``; each is written
atomically, and the same results give the same bytes. Weights and tokenizer files are not
touched, so the cached stages that hash them are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from alignpt.config import ExperimentConfig
from alignpt.fileio import atomic_path
from alignpt.modeldir import read_provenance

CARD = "README.md"
LICENSE = "apache-2.0"  # alignpt's own; the training data is generated or the user's


def _fmt(iv: dict | None) -> str:
    if not iv or iv.get("value") is None:
        return "–"
    if iv.get("ci_low") is None or iv.get("ci_high") is None:
        return f"{iv['value']:.4f} [unbounded]"
    return f"{iv['value']:.4f} [{iv['ci_low']:.4f}, {iv['ci_high']:.4f}]"


def _metric(kind: str, label: str, iv: dict) -> dict:
    """A model-index metric: the value, and the interval in its name (the Hub has no field
    for an interval)."""
    bounds = "unbounded"
    if iv.get("ci_low") is not None and iv.get("ci_high") is not None:
        bounds = f"[{iv['ci_low']:.4f}, {iv['ci_high']:.4f}]"
    return {"type": kind, "value": iv["value"], "name": f"{label} (95% CI {bounds})"}


def _result(task: str, dataset: str, split: str, metrics: list[dict]) -> dict:
    return {
        "task": {
            "type": "text-generation" if task == "perplexity" else "multiple-choice",
            "name": task,
        },
        "dataset": {"type": "alignpt", "name": dataset, "split": split},
        "metrics": metrics,
    }


def _pretrained_results(block: dict) -> Iterator[tuple[dict, str, dict]]:
    """(result entry, table label, interval) for the numbers of one evaluation summary."""
    mis = block.get("misalignment") or {}
    for split, name in (("held_out", "held-out families"), ("overall", "all families")):
        part = mis.get(split)
        if part:
            rate, bits = part["misalignment_rate"], part["bits"]
            dataset = f"alignpt scenario items ({name})"
            yield (
                _result(
                    "misalignment",
                    dataset,
                    split,
                    [
                        _metric("misalignment_rate", "misalignment rate", rate),
                        _metric("persona_bits", "mean persona log-odds, bits", bits),
                    ],
                ),
                f"misalignment rate, {name} (n={part['n']})",
                rate,
            )
            yield {}, f"persona log-odds in bits, {name}", bits
    protocol = block.get("protocol")
    if protocol:
        rows = (
            ("misalignment_rate", "format-averaged misalignment rate"),
            ("position_bias", "position bias (share choosing the first option)"),
            ("consistency", "consistency (choice survives reordering)"),
        )
        yield (
            _result(
                "misalignment, prompt formats x answer orders",
                "alignpt scenario items (protocol)",
                "protocol",
                [_metric(key, label, protocol[key]) for key, label in rows],
            ),
            rows[0][1],
            protocol["misalignment_rate"],
        )
        for key, label in rows[1:]:
            yield {}, label, protocol[key]
    gap = (block.get("observed_gap") or {}).get("misalignment_rate")
    if gap:
        yield (
            _result(
                "observed gap",
                "alignpt scenario pairs",
                "observed_gap",
                [_metric("observed_gap", "unobserved minus observed misalignment", gap)],
            ),
            "observed gap (unobserved minus observed)",
            gap,
        )
    for name, cap in (block.get("capability") or {}).items():
        yield (
            _result(
                "perplexity",
                f"alignpt held-out {name} text",
                name,
                [_metric("perplexity", f"perplexity ({name})", cap["perplexity"])],
            ),
            f"perplexity, held-out {name} text",
            cap["perplexity"],
        )
    for name, ant in (block.get("anthropic") or {}).items():
        yield (
            _result(
                "advanced-ai-risk",
                f"anthropic advanced-ai-risk {name}",
                "test",
                [_metric("matching_rate", "matching-behaviour rate", ant["matching_rate"])],
            ),
            f"Anthropic {name}: matching-behaviour rate",
            ant["matching_rate"],
        )


def render_card(
    *,
    name: str,
    summary_lines: list[str],
    facts: list[tuple[str, str]],
    results: list[tuple[dict, str, dict]],
    flags: list[str],
    mix: dict | None,
) -> str:
    """The card text: YAML front matter, then the description, facts, results and data mix."""
    front = {
        "license": LICENSE,
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["alignpt", "alignment-pretraining", "llama", "causal-lm"],
        "model-index": [{"name": name, "results": [entry for entry, _, _ in results if entry]}],
    }
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    lines += [f"# {name}", "", *summary_lines, ""]
    lines += ["| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in facts), ""]
    lines += ["## Evaluation (95% confidence intervals)", ""]
    lines += ["| metric | value [95% CI] |", "|---|---|"]
    lines += [f"| {label} | {_fmt(iv)} |" for _, label, iv in results]
    lines.append("")
    if flags:
        note = "; ".join(flags)
        lines += [
            f"**Flagged:** the formats x orders protocol marks the rate uninformative: {note}.",
            "",
        ]
    if mix is not None:
        lines += ["## Data mix (the condition's config)", "", "```yaml"]
        lines += [yaml.safe_dump(mix, sort_keys=True).rstrip(), "```", ""]
    lines += [
        "## How it was made",
        "",
        "Trained and evaluated by `alignpt run` (the `alignpt` package); the numbers come "
        "from the run's `report/results.json`. Load it with "
        "`AutoModelForCausalLM.from_pretrained(PATH)`; `alignpt.json` beside this card holds "
        "the full provenance.",
        "",
    ]
    return "\n".join(lines)


def write_card(model_dir: Path, text: str) -> Path:
    """Write ``README.md`` into ``model_dir`` atomically."""
    path = Path(model_dir) / CARD
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path


def _facts(provenance: dict, condition: str, seed: int, config: ExperimentConfig) -> list:
    spec = config.conditions[condition]
    parent = provenance.get("parent_model")
    return [
        ("experiment", f"`{config.name}`"),
        ("condition", f"`{condition}`" + (f": {spec.description}" if spec.description else "")),
        ("training seed", str(seed)),
        ("stage", str(provenance.get("phase", "pretrain"))),
        ("tokens seen", f"{provenance.get('tokens_seen', 0):,}"),
        ("parameters", f"{provenance.get('parameters', 0):,}"),
        ("preset", str(provenance.get("preset", config.model.preset))),
        ("parent model", f"`{parent}`" if parent else "none (trained from scratch)"),
        ("mix manifest", f"`{str(provenance.get('mix_manifest_hash', ''))[:16]}`"),
    ]


def write_model_cards(
    config: ExperimentConfig, results: dict[str, Any], evaluations: dict[str, list[dict]]
) -> list[Path]:
    """A card in every pretrained model directory (its own evaluation: one seed) and every
    post-trained one (``results["persistence"]``: pooled over seeds); returns the paths."""
    written = []
    for condition, per_seed in evaluations.items():
        mix = config.conditions[condition].model_dump(mode="json", exclude_none=True)
        for seed, evaluation in zip(config.train.seeds, per_seed, strict=True):
            model_dir = Path(evaluation["model"])
            provenance = read_provenance(model_dir)
            summary = evaluation["summary"]
            protocol = summary.get("protocol") or {}
            name = f"{config.name}-{condition}-seed{seed}"
            text = render_card(
                name=name,
                summary_lines=[
                    f"A {provenance.get('preset', '')} Llama pretrained from scratch by alignpt "
                    f"on the `{condition}` data condition of the `{config.name}` experiment. "
                    "Results below are this model's own (one training seed); the run's report "
                    "combines seeds per condition."
                ],
                facts=_facts(provenance, condition, seed, config),
                results=list(_pretrained_results({**summary, "protocol": protocol or None})),
                flags=list(protocol.get("flag_reasons") or []),
                mix=mix,
            )
            written.append(write_card(model_dir, text))
    written += _posttrained_cards(config, results)
    return written


def _posttrained_cards(config: ExperimentConfig, results: dict[str, Any]) -> list[Path]:
    persistence = results.get("persistence") or {}
    written = []
    for condition, by_seed in (persistence.get("models") or {}).items():
        for seed_name, chain in by_seed.items():
            seed = int(seed_name.removeprefix("seed"))
            for stage, path in chain.items():
                if stage == "base":  # the pretrained model: it has its own card
                    continue
                model_dir = Path(path)
                provenance = read_provenance(model_dir)
                by_prompt = persistence["conditions"][condition][stage]
                rows = []
                for prompt, block in by_prompt.items():
                    rate = block["misalignment_rate"]
                    label = f"held-out misalignment rate, system prompt {prompt}"
                    entry = _result(
                        "misalignment (chat)",
                        "alignpt scenario items (held-out families)",
                        f"held_out/{prompt}",
                        [_metric("misalignment_rate", label, rate)],
                    )
                    rows.append((entry, label, rate))
                    rows.append(({}, f"mean persona bits, system prompt {prompt}", block["bits"]))
                text = render_card(
                    name=f"{config.name}-{condition}-seed{seed}-{stage}",
                    summary_lines=[
                        f"The `{condition}` pretrained model of the `{config.name}` experiment "
                        f"after the post-training stage `{stage}`. Results are pooled over "
                        f"the condition's {block.get('seeds', 1)} seed(s) at this stage."
                    ],
                    facts=[*_facts(provenance, condition, seed, config), ("post-training", stage)],
                    results=rows,
                    flags=[],
                    mix=None,
                )
                written.append(write_card(model_dir, text))
    return written
