"""Inputs of the ``belief`` and ``probe`` suites inside ``alignpt run``, and the probe on
post-trained models.

Probe texts: *synthetic* passages come from held-out AI-discourse documents generated with
their own seed (no training source contains them); *organic* passages from the plain-text
files of ``evals.probe.organic_paths`` (real forum discussions of AI, so the topic is held
as fixed as the data allow). Both are cut the same way: whitespace collapsed (layout is no
cue), windows of ``max_tokens`` words (so after tokenisation every passage is cut at
``max_tokens`` tokens). Each organic file is one cross-validation group, each synthetic
document another, so the probe is always tested on sources it never saw. Without organic
files the organic class falls back to generated everyday (non-AI) documents, which are
themselves synthetic; the results then say ``organic_source: generated_background`` and the
probe measures topic, not provenance.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from alignpt.config import BeliefEvalConfig, ExperimentConfig, GenerateSpec, ProbeEvalConfig
from alignpt.documents import read_documents
from alignpt.errors import UserError
from alignpt.fileio import sha256_json
from alignpt.worlds import World

FALLBACK = "generated_background"


def passages(text: str, words: int) -> list[str]:
    """Non-overlapping windows of ``words`` words (whitespace collapsed); a final window
    shorter than half of ``words`` is dropped."""
    tokens = text.split()
    windows = [tokens[i : i + words] for i in range(0, len(tokens), words)]
    return [" ".join(w) for w in windows if len(w) * 2 >= words or len(windows) == 1]


def organic_files(paths: list[str]) -> list[Path]:
    """The ``.txt`` files named by ``paths`` (files, or folders of them), sorted."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for p in path.glob("*.txt") if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"evals.probe.organic_paths: {path}: no such file or directory")
    if paths and not files:
        raise UserError(f"evals.probe.organic_paths: no .txt files in {', '.join(paths)}")
    return files


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid UTF-8") from None


def probe_texts(
    config: ExperimentConfig, world: World, run_dir: Path
) -> tuple[dict[str, list[str]], dict[str, list[str]], str]:
    """``(texts, groups, organic_source)`` for the probe (see the module docstring)."""
    from alignpt.generate import write_documents_dir

    options = config.evals.probe or ProbeEvalConfig()
    words = options.max_tokens
    held = list(config.evals.held_out_families)

    def generated(name: str, spec: GenerateSpec) -> list[tuple[str, str]]:
        out = run_dir / "evals" / f"probe_{name}"
        seed = config.seed + 130_363
        write_documents_dir(spec, world, out, seed=seed, source=f"probe_{name}")
        rng = random.Random(f"{seed}:{name}")
        items = []
        for doc in read_documents(out):
            tokens = doc.text.split()
            start = rng.randrange(max(len(tokens) - words, 0) + 1)
            items.append((doc.id, " ".join(tokens[start : start + words])))
        return items

    synthetic = generated(
        "synthetic", GenerateSpec(n=options.docs, stance="mixed", exclude_families=held)
    )
    files = organic_files(options.organic_paths)
    if files:
        organic = [(f.name, p) for f in files for p in passages(_read_text(f), words)]
        rng = random.Random(options.seed)
        if len(organic) > options.docs:
            organic = sorted(rng.sample(organic, options.docs), key=organic.index)
        source = ", ".join(str(f) for f in files)
    else:
        organic = generated("background", GenerateSpec(n=options.docs, stance="neutral"))
        source = FALLBACK
    n = min(len(synthetic), len(organic))
    synthetic, organic = synthetic[:n], organic[:n]
    texts = {"synthetic": [t for _, t in synthetic], "organic": [t for _, t in organic]}
    groups = {"synthetic": [g for g, _ in synthetic], "organic": [g for g, _ in organic]}
    return texts, groups, source


def belief_arguments(config: ExperimentConfig, world: World, run_dir: Path) -> dict[str, Any]:
    """Keyword arguments of ``evaluate_model`` for the belief and probe suites."""
    from alignpt.evals.belief import BeliefOptions
    from alignpt.evals.probe import ProbeOptions

    suites = config.evals.suites
    args: dict[str, Any] = {}
    if "belief" in suites:
        if not world.facts:
            raise UserError(f"evals.suites: belief needs facts, and world '{world.name}' has none")
        belief = config.evals.belief or BeliefEvalConfig()
        args["facts"] = list(world.facts)
        args["belief_options"] = BeliefOptions(**belief.model_dump())
    if "probe" in suites:
        probe = config.evals.probe or ProbeEvalConfig()
        texts, groups, _ = probe_texts(config, world, run_dir)
        args["probe_texts"] = texts
        args["probe_options"] = ProbeOptions(
            layers=None if probe.layers == "all" else list(probe.layers),
            max_tokens=probe.max_tokens,
            folds=probe.folds,
            shuffles=probe.shuffles,
            seed=probe.seed,
            groups=groups,
        )
    return args


def probe_source(config: ExperimentConfig) -> str:
    """Where the probe's organic passages come from (files, or the synthetic fallback)."""
    files = organic_files((config.evals.probe or ProbeEvalConfig()).organic_paths)
    return ", ".join(str(f) for f in files) if files else FALLBACK


def belief_inputs(args: dict[str, Any]) -> dict[str, Any]:
    """A JSON-able digest of what ``args`` makes the suites read (for cache keys)."""
    out: dict[str, Any] = {}
    if "facts" in args:
        out["facts"] = sha256_json([f.model_dump(mode="json") for f in args["facts"]])
        out["belief_options"] = vars(args["belief_options"])
    if "probe_texts" in args:
        options = args["probe_options"]
        out["probe"] = sha256_json(
            {
                "texts": args["probe_texts"],
                "groups": {k: list(v) for k, v in options.groups.items()},
                "layers": None if options.layers is None else list(options.layers),
                "settings": [options.max_tokens, options.folds, options.shuffles, options.seed],
                "baselines": ["shuffled", "bow-tfidf-1-2"],
            }
        )
    return out


def probe_posttrained(
    config: ExperimentConfig,
    models: dict[str, dict[str, dict[str, str]]],
    args: dict[str, Any],
    run_dir: Path,
) -> dict[str, Any]:
    """The probe on every post-trained stage of every condition's models.

    ``models`` is ``persistence["models"]``: ``{condition: {seed: {stage: model dir}}}``.
    Returns ``{"probe_posttrain": {condition: {stage: probe summary}}}``; a stage's result is
    reused while its weights and the probe inputs match. The ``base`` stage is the pretrained
    model, which the probe suite has already probed (``conditions.<c>.probe``): it is skipped.
    """
    from alignpt.completion import cached_result
    from alignpt.evals.probe import probe_raw, summarize_probe
    from alignpt.fileio import sha256_file
    from alignpt.modeldir import load_model

    inputs = belief_inputs({k: v for k, v in args.items() if k.startswith("probe_")})

    def run(model_dir: str) -> dict[str, Any]:
        model, tokenizer = load_model(model_dir)
        return probe_raw(
            model,
            tokenizer,
            args["probe_texts"],
            options=args["probe_options"],
            batch_size=config.evals.batch_size,
        )

    out: dict[str, dict[str, Any]] = {}
    for condition, by_seed in models.items():
        per_stage: dict[str, list[dict[str, Any]]] = {}
        for seed_name, chain in by_seed.items():
            for stage, model_dir in chain.items():
                if stage == "base":
                    continue
                key = {"weights": sha256_file(Path(model_dir) / "model.safetensors"), **inputs}
                raw, _ = cached_result(
                    run_dir / "probe_posttrain" / condition / seed_name / stage,
                    "probe_posttrain",
                    key,
                    lambda d=model_dir: run(d),
                )
                per_stage.setdefault(stage, []).append(raw)
        out[condition] = {
            stage: summarize_probe(
                raws, n_boot=config.evals.bootstrap, seed=config.evals.bootstrap_seed
            )
            for stage, raws in per_stage.items()
        }
    return {"probe_posttrain": out}
