"""The phase plan (how many optimizer steps each phase gets) and the learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alignpt.config import TrainConfig
from alignpt.errors import UserError

if TYPE_CHECKING:  # torch loads only for the scheduler, so ``alignpt plan`` stays torch-free
    import torch


@dataclass(frozen=True)
class PhasePlan:
    """One phase of training: its stream name and its optimizer steps."""

    name: str
    steps: int


def tokens_per_step(train: TrainConfig, seq_len: int) -> int:
    """Tokens consumed by one optimizer step: the global batch (all ranks, all micro-steps)."""
    return train.batch_size * seq_len


def micro_batch_size(
    train: TrainConfig, world_size: int, *, unit: str = "rank(s)", hint: str = ""
) -> int:
    """Sequences per rank per micro-step; the global batch must split evenly."""
    parts = world_size * train.grad_accum
    if train.batch_size % parts:
        raise UserError(
            f"train.batch_size: {train.batch_size} does not split into {world_size} {unit} "
            f"x {train.grad_accum} accumulation step(s){hint}"
        )
    return train.batch_size // parts


def plan_phases(train: TrainConfig, budgets: Mapping[str, int], seq_len: int) -> list[PhasePlan]:
    """Steps per phase from the mix plan's token budgets (``alignpt.mixdir.phase_budgets``).

    Pretraining (its ``pretrain`` and ``late`` streams together) takes ``ceil(tokens / step)``
    steps, of which the ``late`` stream gets its budget's share, rounded; ``finetune`` follows.
    """
    per_step = tokens_per_step(train, seq_len)
    pretrain_tokens = budgets["pretrain"] + budgets.get("late", 0)
    pretrain_steps = max(1, math.ceil(pretrain_tokens / per_step))
    plan: list[PhasePlan] = []
    late_steps = round(budgets["late"] / per_step) if "late" in budgets else 0
    late_steps = min(late_steps, pretrain_steps - 1)
    if "late" in budgets and late_steps == 0:  # the condition's late documents would go unread
        raise UserError(
            f"train.late_fraction: {train.late_fraction} of {pretrain_steps} pretraining steps "
            "gives 0 late steps; raise train.tokens or train.late_fraction"
        )
    plan.append(PhasePlan("pretrain", pretrain_steps - late_steps))
    if late_steps:
        plan.append(PhasePlan("late", late_steps))
    if budgets.get("finetune"):
        plan.append(PhasePlan("finetune", max(1, math.ceil(budgets["finetune"] / per_step))))
    return plan


def make_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup-stable-decay or cosine over every step of every phase (transformers' schedules)."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup, get_wsd_schedule

    warmup = round(total_steps * train.warmup_fraction)
    if train.schedule == "cosine":
        return get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, warmup, total_steps, min_lr_rate=train.min_lr_ratio
        )
    decay = min(round(total_steps * train.decay_fraction), total_steps - warmup)
    return get_wsd_schedule(
        optimizer,
        num_warmup_steps=warmup,
        num_decay_steps=decay,
        num_training_steps=total_steps,
        decay_type="linear",
        min_lr_ratio=train.min_lr_ratio,
    )
