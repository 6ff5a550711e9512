"""Post-training driven by an experiment config: what the runner calls per condition.

The post-training data depend only on the config (world, held-out families, ``config.seed``),
never on the condition or the model seed, so every condition's base model is post-trained
on exactly the same examples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from alignpt.chat import HHH_SYSTEM_PROMPT
from alignpt.config import ExperimentConfig
from alignpt.fileio import sha256_json
from alignpt.items import EvalItem
from alignpt.posttrain.adversarial import AdversarialCurve, adversarial
from alignpt.posttrain.data import Dialogue, PreferencePair, read_dialogues, read_pairs
from alignpt.posttrain.stages import dpo, sft
from alignpt.posttrain.worlddata import (
    generate_dialogues,
    generate_misaligned_demos,
    generate_preference_pairs,
)
from alignpt.worlds import load_world

Stage = Literal["sft", "dpo", "adversarial"]


def system_prompt(config: ExperimentConfig) -> str:
    """The HHH system prompt of this experiment (the built-in one unless configured)."""
    return config.posttrain.system_prompt or HHH_SYSTEM_PROMPT


def stage_data(config: ExperimentConfig, stage: Stage) -> list[Dialogue] | list[PreferencePair]:
    """The examples of one stage: ``posttrain.<stage>.data`` if set, else generated."""
    options = getattr(config.posttrain, stage)
    if options.data:
        return read_pairs(options.data) if stage == "dpo" else read_dialogues(options.data)
    world = load_world(config.world)
    generate = {
        "sft": generate_dialogues,
        "dpo": generate_preference_pairs,
        "adversarial": generate_misaligned_demos,
    }[stage]
    return generate(
        world,
        n=options.n,
        seed=config.seed,
        held_out_families=config.evals.held_out_families,
        families=config.posttrain.families,
    )


def posttrain_model(
    config: ExperimentConfig,
    base_model_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int,
    tokenizer_dir: str | Path | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Run ``config.posttrain.stages`` in order (SFT, then DPO on the SFT model).

    Returns ``{"base": base_model_dir, "sft": out_dir/"sft", "dpo": out_dir/"dpo"}`` (the
    stages configured). Finished stages are skipped.
    """
    out_dir = Path(out_dir)
    models: dict[str, Path] = {"base": Path(base_model_dir)}
    current = Path(base_model_dir)
    for stage in config.posttrain.stages:
        if stage == "sft":
            current = sft(
                current,
                stage_data(config, "sft"),
                out_dir / "sft",
                seed=seed,
                options=config.posttrain.sft,
                tokenizer_dir=tokenizer_dir,
                force=force,
            )
        else:
            current = dpo(
                current,
                stage_data(config, "dpo"),
                out_dir / "dpo",
                seed=seed,
                options=config.posttrain.dpo,
                tokenizer_dir=tokenizer_dir,
                add_chat_template=True,
                force=force,
            )
        models[stage] = current
    return models


def adversarial_curve(
    config: ExperimentConfig,
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int,
    items: Sequence[EvalItem],
    eval_fn: Callable[[Any, Any], dict[str, Any]],
    use_system_prompt: bool = False,
    tokenizer_dir: str | Path | None = None,
    force: bool = False,
) -> AdversarialCurve:
    """Adversarial finetuning of ``model_dir`` with ``config.posttrain.adversarial``,
    evaluated at every scheduled step by ``eval_fn(model, tokenizer)`` (the runner passes the
    chat-model scorer of ``evals``) on ``items``, which with the system prompt key its cache."""
    prompt = system_prompt(config) if use_system_prompt else None
    eval_key = sha256_json({"items": [i.model_dump() for i in items], "system": prompt})
    return adversarial(
        model_dir,
        stage_data(config, "adversarial"),
        out_dir,
        seed=seed,
        eval_fn=eval_fn,
        options=config.posttrain.adversarial,
        eval_key=eval_key,
        tokenizer_dir=tokenizer_dir,
        add_chat_template=True,
        force=force,
    )
