"""Post-training persistence inside ``alignpt run``, and the study summaries of the report.

When an experiment YAML has a ``posttrain:`` section, every condition's pretrained model is
post-trained identically (``posttrain_model``: SFT, then DPO), and the base, SFT and SFT+DPO
models are scored as chat models on the held-out-family eval items, with and without the
HHH system prompt. The results say, per condition and stage, the misalignment rate and mean
bits with 95% CIs (Wilson / bootstrap for one seed; a bootstrap over seeds and items for
several), and how much of the base-model
gap between the baseline and each other condition remains after each stage
(``retained_gap_share``). With ``posttrain.adversarial`` set, the final model of every
condition is also finetuned on misaligned demonstrations and the curve of rate against
adversarial steps and the steps to reach ``threshold`` are reported ("stickiness").

A ``study:`` section names the study (dose, placement, disclosure, persistence) and each
condition's x-value, so the report can draw the study's own plot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alignpt.completion import cached_result
from alignpt.config import ExperimentConfig
from alignpt.fileio import sha256_file, sha256_json
from alignpt.items import EvalItem
from alignpt.layout import seed_dir

if TYPE_CHECKING:
    from alignpt.posttrain.pipeline import DataSource

PROMPTS = ("none", "hhh")
X_LABELS = {
    "dose": "aligned-document share of pretraining tokens",
    "placement": "where the aligned documents enter",
    "disclosure": "synthetic-disclosure header",
    "persistence": "condition",
}


def posttrain_source(config: ExperimentConfig) -> DataSource:
    """What the post-training stage generates its examples from, out of the experiment."""
    from alignpt.posttrain.pipeline import DataSource

    return DataSource(config.world, config.seed, tuple(config.evals.held_out_families))


def held_out_items(items: Sequence[EvalItem], held_out: Sequence[str]) -> list[EvalItem]:
    """The items of held-out families (every item when nothing is held out)."""
    return [i for i in items if i.family in held_out] if held_out else list(items)


def pooled_summary(evaluations: Sequence[dict[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """Misalignment rate and mean bits over every seed's evaluation of the same items.

    One seed: Wilson 95% CI for the rate, percentile bootstrap for bits. Several seeds: the
    two-level bootstrap over seeds and items (as the condition table uses), since the seeds
    score the same items and pooling them as independent trials would narrow the interval.
    """
    from alignpt.analysis.stats import bootstrap_mean, mean_with_ci, rate_with_ci

    if len(evaluations) > 1:
        outcomes = [[float(bool(x)) for x in e["per_item"]] for e in evaluations]
        bits_matrix = [[float(x) for x in e["per_item_bits"]] for e in evaluations]
        n = sum(len(row) for row in outcomes)
        return {
            "misalignment_rate": {**bootstrap_mean(outcomes, seed=seed), "n": n},
            "bits": {**bootstrap_mean(bits_matrix, seed=seed), "n": n},
            "seeds": len(evaluations),
        }
    (evaluation,) = evaluations
    return {
        "misalignment_rate": rate_with_ci([bool(x) for x in evaluation["per_item"]]),
        "bits": mean_with_ci([float(x) for x in evaluation["per_item_bits"]], seed=seed),
        "seeds": 1,
    }


def per_item_mean(evaluations: Sequence[dict[str, Any]], key: str) -> list[float]:
    """Per-item scores averaged over seeds (the items are the same for every seed)."""
    return np.mean([np.asarray(e[key], dtype=float) for e in evaluations], axis=0).tolist()


def run_persistence(
    config: ExperimentConfig,
    models: dict[str, list[Path]],
    items: Sequence[EvalItem],
    *,
    tokenizer_dir: Path | None = None,
    say: Callable[[str, str], None] = lambda stage, message: None,
) -> dict[str, Any]:
    """Post-train every model, evaluate every stage; returns the ``persistence`` (and, with
    ``posttrain.adversarial`` set, ``stickiness``) sections of ``results.json``."""
    from alignpt.evals.chat import evaluate_chat_model
    from alignpt.posttrain.pipeline import posttrain_model, system_prompt

    held = held_out_items(items, config.evals.held_out_families)
    items_hash = sha256_json([i.model_dump(mode="json") for i in held])
    prompts = {"none": None, "hhh": system_prompt(config.posttrain)}
    source = posttrain_source(config)
    stages = ["base", *config.posttrain.stages]
    evaluations: dict[str, dict[str, dict[str, list[dict]]]] = {}
    finals: dict[str, list[tuple[str, int, Path]]] = {}
    generated: dict[str, dict[str, dict[str, dict[str, list[dict]]]]] = {}
    model_dirs: dict[str, dict[str, dict[str, str]]] = {}
    for condition, dirs in models.items():
        for seed, base in zip(config.train.seeds, dirs, strict=True):
            seed_name = seed_dir(seed)
            say("posttrain", f"{condition} {seed_name}: {' → '.join(stages)}")
            chain = posttrain_model(
                config.posttrain,
                source,
                base,
                config.layout.stage_run("posttrain", condition, seed),
                seed=seed,
                tokenizer_dir=tokenizer_dir,
            )
            model_dirs.setdefault(condition, {})[seed_name] = {k: str(v) for k, v in chain.items()}
            finals.setdefault(condition, []).append((seed_name, seed, chain[stages[-1]]))
            for stage in stages:
                weights = sha256_file(chain[stage] / "model.safetensors")
                for name, prompt in prompts.items():
                    key = {"weights": weights, "items": items_hash, "system_prompt": prompt}
                    result, _ = cached_result(
                        config.layout.stage_run("persistence", condition, seed) / f"{stage}-{name}",
                        "persistence",
                        key,
                        lambda d=chain[stage], p=prompt, s=stage: evaluate_chat_model(
                            d, held, system_prompt=p, add_chat_template=s == "base"
                        ),
                    )
                    by_stage = evaluations.setdefault(condition, {}).setdefault(stage, {})
                    by_stage.setdefault(name, []).append(result)
                    if config.evals.generation is not None:
                        records = generation_records(
                            config,
                            config.layout.stage_run("persistence", condition, seed)
                            / f"{stage}-{name}-generation",
                            key,
                            chain[stage],
                            held,
                            prompt,
                            add_chat_template=stage == "base",
                        )
                        runs = generated.setdefault(condition, {}).setdefault(stage, {})
                        runs.setdefault(name, {})[seed_name] = records
            say("persistence", f"{condition} {seed_name}: evaluated {len(held)} held-out items")
    baseline = config.baseline
    persistence: dict[str, Any] = {
        "stages": stages,
        "prompts": prompts,
        "baseline": baseline,
        "eval_items": len(held),
        "held_out_families": list(config.evals.held_out_families),
        "models": model_dirs,
        "conditions": {
            condition: {
                stage: {
                    name: pooled_summary(evals, seed=config.evals.bootstrap_seed)
                    for name, evals in by_prompt.items()
                }
                for stage, by_prompt in by_stage.items()
            }
            for condition, by_stage in evaluations.items()
        },
    }
    persistence["retained_gap_share"] = retained_gaps(
        evaluations,
        baseline=baseline,
        stages=stages,
        n_resamples=config.evals.bootstrap,
        seed=config.evals.bootstrap_seed,
    )
    if config.evals.generation is not None:
        persistence["generation"] = generation_summary(config, generated)
    sections = {"persistence": persistence}
    if "adversarial" in config.posttrain.model_fields_set:
        sections["stickiness"] = run_stickiness(config, finals, held, tokenizer_dir, say)
    return sections


def generation_records(
    config: ExperimentConfig,
    out: Path,
    key: dict[str, Any],
    model_dir: Path,
    items: Sequence[EvalItem],
    prompt: str | None,
    *,
    add_chat_template: bool,
) -> list[dict[str, Any]]:
    """One model's generated answers to ``items`` (cached under ``out``)."""
    from alignpt.evals.generation import evaluate_chat_generation

    options = config.evals.generation
    assert options is not None
    key = key | {"generation": options.model_dump(mode="json", exclude={"max_parse_failure"})}
    result, _ = cached_result(
        out,
        "persistence-generation",
        key,
        lambda: evaluate_chat_generation(
            model_dir,
            items,
            system_prompt=prompt,
            add_chat_template=add_chat_template,
            max_new_tokens=options.max_new_tokens,
            all_orders=options.all_orders,
            max_parse_failure=options.max_parse_failure,
        ),
    )
    return result["records"]


def generation_summary(
    config: ExperimentConfig, generated: dict[str, dict[str, dict[str, dict[str, list[dict]]]]]
) -> dict[str, Any]:
    """``persistence.generation``: per condition, stage and system prompt, the misalignment
    rate among parsed generated answers and the parse-failure rate (95% CIs), pooled over
    the seeds whose parse-failure rate is within ``evals.generation.max_parse_failure``."""
    from alignpt.evals.generation import pool_runs

    options = config.evals.generation
    assert options is not None
    return {
        "max_new_tokens": options.max_new_tokens,
        "all_orders": options.all_orders,
        "max_parse_failure": options.max_parse_failure,
        "conditions": {
            condition: {
                stage: {
                    prompt: pool_runs(
                        runs,
                        max_parse_failure=options.max_parse_failure,
                        n_boot=config.evals.bootstrap,
                        seed=config.evals.bootstrap_seed,
                    )
                    for prompt, runs in by_prompt.items()
                }
                for stage, by_prompt in by_stage.items()
            }
            for condition, by_stage in generated.items()
        },
    }


def retained_gaps(
    evaluations: dict[str, dict[str, dict[str, list[dict[str, Any]]]]],
    *,
    baseline: str,
    stages: Sequence[str],
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``[prompt]["<condition> vs <baseline>"][metric][stage]``: the share of the base-model
    gap between the baseline and each other condition that remains after each stage, for the
    misalignment outcomes and for bits (``retained_gap_share``, paired bootstrap 95% CI).

    ``evaluations[condition][stage][prompt]`` lists one ``evaluate_chat_model`` result per
    seed; per-item scores are averaged over seeds first.
    """
    from alignpt.posttrain.persistence import retained_gap_table

    table: dict[str, dict[str, dict[str, Any]]] = {}
    if baseline not in evaluations:
        return table
    prompts = list(evaluations[baseline][stages[0]])
    for prompt in prompts:
        for condition in evaluations:
            if condition == baseline:
                continue
            pair = table.setdefault(prompt, {}).setdefault(f"{condition} vs {baseline}", {})
            for metric, key in (("misalignment_rate", "per_item"), ("bits", "per_item_bits")):
                scores = {
                    stage: {
                        c: per_item_mean(evaluations[c][stage][prompt], key)
                        for c in (condition, baseline)
                    }
                    for stage in stages
                }
                pair[metric] = retained_gap_table(
                    scores, low=condition, high=baseline, n_resamples=n_resamples, seed=seed
                )
    return table


def run_stickiness(
    config: ExperimentConfig,
    finals: dict[str, list[tuple[str, int, Path]]],
    held: Sequence[EvalItem],
    tokenizer_dir: Path | None,
    say: Callable[[str, str], None],
) -> dict[str, Any]:
    """Adversarial curves of each condition's final post-trained model, pooled over seeds."""
    from alignpt.analysis.stats import rate_with_ci
    from alignpt.evals.chat import chat_misalignment_eval
    from alignpt.posttrain.adversarial import AdversarialCurve, CurvePoint
    from alignpt.posttrain.persistence import steps_to_rate
    from alignpt.posttrain.pipeline import adversarial_curve

    threshold = config.posttrain.adversarial.threshold
    conditions: dict[str, Any] = {}
    for condition, runs in finals.items():
        curves = []
        for seed_name, seed, model_dir in runs:
            say(
                "adversarial",
                f"{condition} {seed_name}: steps {config.posttrain.adversarial.steps}",
            )
            curves.append(
                adversarial_curve(
                    config.posttrain,
                    posttrain_source(config),
                    model_dir,
                    config.layout.stage_run("adversarial", condition, seed),
                    seed=seed,
                    items=held,
                    eval_fn=chat_misalignment_eval(held),
                    tokenizer_dir=tokenizer_dir,
                )
            )
        points = []
        for at_step in zip(*(c.points for c in curves), strict=True):
            outcomes = [bool(x) for p in at_step for x in p.metrics["per_item"]]
            rate = rate_with_ci(outcomes)
            points.append(
                CurvePoint(at_step[0].step, rate["value"], rate["ci_low"], rate["ci_high"])
            )
        pooled = AdversarialCurve(points)
        conditions[condition] = {
            "points": [
                {"step": p.step, "value": p.value, "ci_low": p.ci_low, "ci_high": p.ci_high}
                for p in points
            ],
            "n": len(held) * len(curves),
            "seeds": len(curves),
            "steps_to_rate": steps_to_rate(pooled, threshold),
        }
    return {"threshold": threshold, "system_prompt": None, "conditions": conditions}


def study_x(config: ExperimentConfig, condition: str) -> float | str:
    """A condition's x-value in its study: given in ``study.x``, else derived from sources."""
    study = config.study
    if study is None:
        return condition
    if condition in study.x:
        return study.x[condition]
    sources = config.conditions[condition].sources.values()
    if study.kind == "dose":
        return float(sum(s.dose_share or 0.0 for s in sources))
    if study.kind == "placement":  # a finetune-only source has no dose but is still placed
        placed = [
            s.phase for s in sources if s.dose_share or s.dose_tokens or s.phase != "pretrain"
        ]
        return "+".join(dict.fromkeys(placed)) or "none"
    return condition


def study_section(config: ExperimentConfig, results: dict[str, Any]) -> dict[str, Any]:
    """The ``study`` section of ``results.json``: one point per condition with its x-value and
    its held-out (else overall) misalignment rate and bits, each with its 95% CI."""
    study = config.study
    if study is None:
        return {}
    points = []
    for condition, block in results.get("conditions", {}).items():
        split = block.get("held_out") or block
        point = {
            "condition": condition,
            "x": study_x(config, condition),
            "misalignment_rate": split.get("misalignment_rate"),
            "bits": split.get("bits"),
            "split": "held_out" if "held_out" in block else "overall",
        }
        points.append(point)
    if study.kind == "dose":
        points.sort(key=lambda p: float(p["x"]))
    return {
        "study": {
            "kind": study.kind,
            "x_label": study.x_label or X_LABELS[study.kind],
            "points": points,
        }
    }
