"""Sampled continuations of the held-out item prompts, graded by keyword rules.

For every condition's models, each held-out item prompt (the first ``max_items``) is
continued ``samples_per_item`` times, in the way ``evals.sampled.sampling`` names for the
condition (a forced mode under the model's grammar, PHF's control-token conditioning, or
plain), with a fixed sampling seed. Each continuation is graded misaligned, aligned or
unclear (:mod:`alignpt.evals.keywords`); ``results.json`` gets, per condition, each share
with its 95% Wilson interval over all the condition's continuations (seeds pooled).
A model's continuations are cached in ``runs/<name>/sampled/<condition>/seed<k>/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alignpt.completion import RESULT, cached_result, completion_key, is_complete
from alignpt.config import ExperimentConfig, SampledEvalConfig
from alignpt.evals.keywords import KeywordRules, default_rules, summarize_grades
from alignpt.experiment.parallel import run_jobs, worker_count
from alignpt.fileio import sha256_file, sha256_json
from alignpt.items import EvalItem
from alignpt.seeds import derive_seed


def sample_prompts(spec: SampledEvalConfig, items: list[EvalItem], held_out: list[str]) -> list:
    """(item id, prompt) per continuation: held-out items in order, each repeated."""
    chosen = [item for item in items if item.family in set(held_out)][: spec.max_items]
    return [(item.id, item.prompt) for item in chosen for _ in range(spec.samples_per_item)]


def keyword_rules(config: ExperimentConfig, world: Any) -> KeywordRules:
    """The config's rules, else the default drawn from the held-out families' actions."""
    spec = config.evals.sampled
    assert spec is not None
    if spec.rules is not None:
        return KeywordRules(tuple(spec.rules.misaligned), tuple(spec.rules.aligned))
    return default_rules([world.family(name) for name in config.evals.held_out_families])


def sample_job(model_dir: Path, prompts: list[str], sampling: dict, settings: dict) -> list[dict]:
    """Continuations of ``prompts`` from one model; a top-level function so workers run it.

    The grammar is the one the model directory keeps (the packaged default otherwise); each
    batch samples with its own seed derived from ``settings["seed"]``.
    """
    from alignpt.constrained import ModeSampling
    from alignpt.inference.sampler import Sampler, SampleSettings

    sampler = Sampler.load(model_dir)
    mode = ModeSampling(**sampling)
    size = settings["batch_size"]
    out: list[dict] = []
    for k in range(0, len(prompts), size):
        decoding = SampleSettings(
            max_new_tokens=settings["max_new_tokens"],
            temperature=settings["temperature"],
            top_p=settings["top_p"],
            seed=derive_seed(settings["seed"], "sampled", str(k // size)),
        )
        for done in sampler.sample(prompts[k : k + size], mode, decoding):
            out.append({"text": done.text, "finish": done.finish_reason})
    return out


def run_sampled(
    config: ExperimentConfig,
    models: dict[str, list[Path]],
    items: list[EvalItem],
    world: Any,
    say: Callable[[str, str], None],
) -> dict[str, Any]:
    """Sample, grade and summarise every condition's models: ``{"sampled": {...}}``."""
    spec = config.evals.sampled
    assert spec is not None
    rules = keyword_rules(config, world)
    prompts = sample_prompts(spec, items, config.evals.held_out_families)
    settings = spec.model_dump(mode="json", include={"max_new_tokens", "temperature", "top_p"})
    settings.update(seed=spec.seed, batch_size=spec.batch_size)
    texts = [prompt for _, prompt in prompts]
    todo: dict[Path, tuple[str, int, Path, dict]] = {}  # model dir -> condition, seed, out, key
    jobs: list[tuple] = []
    found: dict[tuple[str, int], list[dict]] = {}
    for condition, dirs in models.items():
        sampling = spec.sampling.get(condition)
        how = sampling.model_dump(mode="json") if sampling else {}
        for seed, model_dir in zip(config.train.seeds, dirs, strict=True):
            key = {
                "model_weights": sha256_file(model_dir / "model.safetensors"),
                "prompts": sha256_json(prompts),
                "sampling": how,
                "settings": settings,
            }
            out = config.layout.stage_run("sampled", condition, seed)
            if is_complete(out, completion_key(key)):
                found[condition, seed] = json.loads((out / RESULT).read_text())["continuations"]
                say("sampled", f"{condition} seed{seed}: reused")
            else:
                todo[model_dir] = (condition, seed, out, key)
                jobs.append((model_dir, texts, how, settings))
    workers = 1 if _cuda() else worker_count(config.train.workers, len(jobs))
    finished = run_jobs(sample_job, jobs, workers=workers, threads=config.train.cpu_threads)
    for (model_dir, *_), continuations, seconds in finished:
        condition, seed, out, key = todo[model_dir]
        rows = [
            {"id": item_id, **row} for (item_id, _), row in zip(prompts, continuations, strict=True)
        ]
        cached_result(out, "sampled", key, lambda rows=rows: {"continuations": rows})
        found[condition, seed] = rows
        say("sampled", f"{condition} seed{seed}: {len(rows)} continuations in {seconds:.0f} s")
    conditions: dict[str, Any] = {}
    for condition in models:
        rows = [r for seed in config.train.seeds for r in found[condition, seed]]
        labels = [rules.grade(r["text"]) for r in rows]
        sampling = spec.sampling.get(condition)
        conditions[condition] = {
            "sampling": sampling.model_dump(mode="json") if sampling else {},
            **summarize_grades(labels),
            "examples": [{**r, "grade": g} for r, g in zip(rows[:3], labels[:3], strict=True)],
        }
        rate = conditions[condition]["misaligned_rate"]
        say("sampled", f"{condition}: misaligned {rate['value']:.3f} of {len(rows)}")
    return {
        "sampled": {
            "rules": rules.as_dict(),
            "settings": {**settings, "samples_per_item": spec.samples_per_item},
            "items": len(dict.fromkeys(item_id for item_id, _ in prompts)),
            "continuations_per_model": len(prompts),
            "conditions": conditions,
        }
    }


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
