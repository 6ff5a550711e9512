"""Post-training driven by its config section: what the runner calls per condition.

The stage takes the ``posttrain`` section and a :class:`DataSource` (world, experiment seed,
held-out eval families). Its data depend only on those, never on the condition or the model
seed, so every condition's base model is post-trained on exactly the same examples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alignpt.chat import HHH_SYSTEM_PROMPT
from alignpt.config import PosttrainConfig
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


@dataclass(frozen=True)
class DataSource:
    """What generated post-training examples are drawn from: the world, the experiment's seed
    and the eval families they must leave out."""

    world: str
    seed: int
    held_out_families: tuple[str, ...] = ()


def system_prompt(section: PosttrainConfig) -> str:
    """The HHH system prompt of this experiment (the built-in one unless configured)."""
    return section.system_prompt or HHH_SYSTEM_PROMPT


def stage_data(
    section: PosttrainConfig, stage: Stage, source: DataSource
) -> list[Dialogue] | list[PreferencePair]:
    """The examples of one stage: ``posttrain.<stage>.data`` if set, else generated."""
    options = getattr(section, stage)
    if options.data:
        return read_pairs(options.data) if stage == "dpo" else read_dialogues(options.data)
    world = load_world(source.world)
    generate = {
        "sft": generate_dialogues,
        "dpo": generate_preference_pairs,
        "adversarial": generate_misaligned_demos,
    }[stage]
    return generate(
        world,
        n=options.n,
        seed=source.seed,
        held_out_families=list(source.held_out_families),
        families=section.families,
    )


def posttrain_model(
    section: PosttrainConfig,
    source: DataSource,
    base_model_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int,
    tokenizer_dir: str | Path | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Run ``section.stages`` in order (SFT, then DPO on the SFT model).

    Returns ``{"base": base_model_dir, "sft": out_dir/"sft", "dpo": out_dir/"dpo"}`` (the
    stages configured). Finished stages are skipped.
    """
    out_dir = Path(out_dir)
    models: dict[str, Path] = {"base": Path(base_model_dir)}
    current = Path(base_model_dir)
    for stage in section.stages:
        if stage == "sft":
            current = sft(
                current,
                stage_data(section, "sft", source),
                out_dir / "sft",
                seed=seed,
                options=section.sft,
                tokenizer_dir=tokenizer_dir,
                force=force,
            )
        else:
            current = dpo(
                current,
                stage_data(section, "dpo", source),
                out_dir / "dpo",
                seed=seed,
                options=section.dpo,
                tokenizer_dir=tokenizer_dir,
                add_chat_template=True,
                force=force,
            )
        models[stage] = current
    return models


def adversarial_curve(
    section: PosttrainConfig,
    source: DataSource,
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
    """Adversarial finetuning of ``model_dir`` with ``section.adversarial``,
    evaluated at every scheduled step by ``eval_fn(model, tokenizer)`` (the runner passes the
    chat-model scorer of ``evals``) on ``items``, which with the system prompt key its cache."""
    prompt = system_prompt(section) if use_system_prompt else None
    eval_key = sha256_json({"items": [i.model_dump() for i in items], "system": prompt})
    return adversarial(
        model_dir,
        stage_data(section, "adversarial", source),
        out_dir,
        seed=seed,
        eval_fn=eval_fn,
        options=section.adversarial,
        eval_key=eval_key,
        tokenizer_dir=tokenizer_dir,
        add_chat_template=True,
        force=force,
    )
