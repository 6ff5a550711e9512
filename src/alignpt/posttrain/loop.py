"""The optimisation loop shared by SFT, DPO and adversarial finetuning, on the training engine.

Optimizer, schedule, clipping, autocast and the resumable state are pretraining's
(``alignpt.train.engine``); what is post-training's own is the data order and the losses.
Data order is a pure function of (seed, step): step k reads rows k*b … (k+1)*b-1 of an endless
sequence of seeded epoch permutations. With model + optimizer + scheduler + RNG state in a
checkpoint, an interrupted run resumes at exactly the next batch and ends with the same
weights as an uninterrupted one.

A checkpoint is a directory (written under a temporary name, then renamed)::

    .<out>.partial/checkpoint/
      model.safetensors          the model's weights (tied ones once)
      engine_state.safetensors   optimizer, scheduler and RNG tensors
      engine_state.json          the rest: run key, step, losses, the caller's extra
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_model, save_model
from transformers import PreTrainedModel, get_scheduler

from alignpt.chat import IGNORE_INDEX
from alignpt.errors import UserError
from alignpt.faults import kill_point
from alignpt.fileio import atomic_path
from alignpt.posttrain.losses import sequence_logprobs
from alignpt.seeds import epoch_rng
from alignpt.train.distributed import (
    DistContext,
    broadcast_from_main,
    gather_from_ranks,
    mean_across_ranks,
    setup_distributed,
    wrap_model,
)
from alignpt.train.engine import (
    Engine,
    adamw,
    autocast_context,
    legacy_checkpoint_error,
    read_state,
    rng_state,
    write_state,
)

CHECKPOINT = "checkpoint"  # a directory in the run's work dir
MODEL_WEIGHTS = "model.safetensors"
LEGACY_CHECKPOINT = "checkpoint.pt"  # earlier versions' pickled checkpoint


@lru_cache(maxsize=8)
def _permutation(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    return tuple(int(i) for i in epoch_rng(seed, epoch).permutation(n))


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The example indices of optimisation step ``step`` (deterministic, epoch-shuffled).

    Hand-written rather than a torch DataLoader + RandomSampler because it is addressable
    by step: resuming at step k needs no replay of the sampler's random stream.
    """
    rows: list[int] = []
    position = step * batch_size
    while len(rows) < batch_size:
        epoch, offset = divmod(position, n)
        take = min(batch_size - len(rows), n - offset)
        rows.extend(_permutation(n, seed, epoch)[offset : offset + take])
        position += take
    return rows


def pad_batch(
    rows: Sequence[tuple[list[int], list[int]]], pad_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Right-pad (ids, labels) rows into ``input_ids``, ``attention_mask`` and ``labels``.

    (transformers' DataCollatorForSeq2Seq does the same but needs a tokenizer per call site
    and converts through Python lists again; this keeps the losses' inputs explicit.)
    """
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row_ids, row_labels) in enumerate(rows):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        labels[i, : len(row_labels)] = torch.tensor(row_labels)
        attention[i, : len(row_ids)] = 1
    return {"input_ids": ids.to(device), "attention_mask": attention.to(device), "labels": labels}


def rank_rows(rows: Sequence[int], ctx: DistContext) -> list[int]:
    """This rank's share of a global batch (every ``world_size``-th row from ``rank``).

    Each rank scores its rows with the loss normalised by the *global* batch (token or pair
    count) times ``world_size``; DDP's gradient mean then equals the single-process gradient.
    """
    if len(rows) < ctx.world_size:
        raise UserError(
            f"batch_size {len(rows)} is smaller than the {ctx.world_size} ranks; raise it"
        )
    return list(rows[ctx.rank :: ctx.world_size])


def on_main(decide: Callable[[], Any], ctx: DistContext) -> Any:
    """Run ``decide`` on rank 0 only and give every rank its result (or its UserError)."""
    result: Any = None
    if ctx.is_main:
        try:
            result = ("ok", decide())
        except UserError as error:
            result = ("error", str(error))
    kind, value = broadcast_from_main(result, ctx)
    if kind == "error":
        raise UserError(value)
    return value


@dataclass(frozen=True)
class LoopOptions:
    """Optimiser and schedule settings (from a PosttrainStageConfig)."""

    lr: float
    weight_decay: float = 0.0
    warmup_fraction: float = 0.0
    grad_clip: float = 1.0
    schedule: str = "linear"  # any transformers scheduler name; adversarial uses "constant..."


class Optimisation:
    """The training engine (AdamW, a transformers LR schedule, clipping) over one model, with
    step and loss counts and a resumable state."""

    def __init__(
        self,
        model: PreTrainedModel,
        options: LoopOptions,
        total_steps: int,
        ctx: DistContext | None = None,
    ) -> None:
        self.model = model
        self.ctx = ctx or setup_distributed()
        # What the losses call: the model itself, or its DDP wrapper under torchrun.
        self.forward_model = wrap_model(model, self.ctx, "ddp")
        self.options = options
        self.device = next(model.parameters()).device
        optimizer = adamw(
            model,
            lr=options.lr,
            weight_decay=options.weight_decay,
            grouping="single",
            fused=self.device.type == "cuda",
        )
        scheduler = get_scheduler(
            options.schedule,
            optimizer,
            num_warmup_steps=round(options.warmup_fraction * total_steps),
            num_training_steps=max(total_steps, 1),
        )
        self.engine = Engine(
            model.parameters(),
            optimizer,
            scheduler,
            grad_clip=options.grad_clip,
            device=self.device,
        )
        self.step = 0
        # Every step's loss since step 0 (restored on resume): the manifest's mean_loss.
        self.loss_sum, self.loss_count, self.last_loss = 0.0, 0, float("nan")

    def apply(self, loss: torch.Tensor) -> float:
        """Backpropagate ``loss``, clip, step the optimizer and schedule; returns the loss."""
        self.engine.zero_grad()
        loss.backward()
        self.engine.step()
        self.step += 1
        self.last_loss = float(mean_across_ranks(loss.detach(), self.ctx))
        self.loss_sum += self.last_loss
        self.loss_count += 1
        return self.last_loss

    @property
    def mean_loss(self) -> float:
        """The mean loss of every step taken so far, resumed sessions included."""
        return self.loss_sum / self.loss_count if self.loss_count else float("nan")

    def save(self, work_dir: Path, key: str, extra: dict[str, Any]) -> None:
        """Checkpoint everything needed to resume at ``self.step`` (atomic; rank 0 writes).

        Every rank calls it: each one's RNG state is gathered into the checkpoint.
        """
        rngs = gather_from_ranks(rng_state(self.device), self.ctx)
        if not self.ctx.is_main:
            return
        state = {
            "key": key,
            "step": self.step,
            **self.engine.state(rng=rngs),
            "extra": extra,
            "losses": {"sum": self.loss_sum, "count": self.loss_count, "last": self.last_loss},
        }
        with atomic_path(work_dir / CHECKPOINT) as tmp:
            tmp.mkdir(parents=True)
            save_model(self.model, str(tmp / MODEL_WEIGHTS), force_contiguous=True)
            write_state(tmp, state)

    def restore(self, work_dir: Path, key: str, *, force: bool = False) -> dict[str, Any] | None:
        """Load a checkpoint written for the same run ``key``; returns its extra or None.

        A checkpoint in the pickled format of earlier versions is refused in one line, or
        with ``force`` ignored (the run starts over).
        """
        path = work_dir / CHECKPOINT
        if not path.is_dir():
            legacy = work_dir / LEGACY_CHECKPOINT
            if legacy.is_file() and not force:
                raise legacy_checkpoint_error(legacy)
            return None
        state = read_state(path)
        if state.get("key") != key:
            return None
        missing, unexpected = load_model(
            self.model, path / MODEL_WEIGHTS, strict=False, device=str(self.device)
        )
        if missing or unexpected:
            raise UserError(f"{path}: weights do not fit this model")
        self.engine.load_state(state, rank=self.ctx.rank)
        self.step = int(state["step"])
        losses = state.get("losses", {})
        self.loss_sum = float(losses.get("sum", 0.0))
        self.loss_count = int(losses.get("count", 0))
        self.last_loss = float(losses.get("last", float("nan")))
        return state["extra"]


def autocast_for(model: PreTrainedModel) -> contextlib.AbstractContextManager:
    """The engine's ``auto`` precision on the model's device: bf16 autocast on CUDA (weights
    and optimizer stay fp32), nothing on CPU."""
    return autocast_context("auto", next(model.parameters()).device)


def work_dir_for(out_dir: Path) -> Path:
    """Where an unfinished run beside ``out_dir`` keeps its checkpoint."""
    return out_dir.with_name(f".{out_dir.name}.partial")


def discard_work_dir(out_dir: Path) -> None:
    """Delete the checkpoint of a finished run beside ``out_dir``, and its folder if empty."""
    work = work_dir_for(out_dir)
    shutil.rmtree(work / CHECKPOINT, ignore_errors=True)
    (work / LEGACY_CHECKPOINT).unlink(missing_ok=True)
    if work.is_dir() and not any(work.iterdir()):
        work.rmdir()


@torch.no_grad()
def batched_logprobs(
    model: PreTrainedModel,
    rows: Sequence[tuple[list[int], list[int]]],
    pad_id: int,
    batch_size: int,
    *,
    per_token: bool = False,
) -> torch.Tensor:
    """log π(labels | prefix) of every (ids, labels) row, in eval mode without gradients.

    With ``per_token`` each row's sum is divided by its number of scored tokens. Returns a
    CPU tensor with one value per row.
    """
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(rows), batch_size):
        batch = pad_batch(rows[start : start + batch_size], pad_id, device)
        with autocast_for(model):
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
        labels = batch["labels"].to(device)
        logps = sequence_logprobs(logits, labels)
        if per_token:
            logps = logps / (labels[:, 1:] != IGNORE_INDEX).sum(dim=-1).clamp(min=1)
        out.append(logps.cpu())
    return torch.cat(out) if out else torch.zeros(0)


def progress_bar(description: str) -> Progress:
    """A rich progress bar (rank 0 only; off when ALIGNPT_NO_PROGRESS is set, e.g. in tests)."""
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
        disable=bool(os.environ.get("ALIGNPT_NO_PROGRESS"))
        or int(os.environ.get("RANK", "0")) != 0,
    )


def run_steps(
    optimisation: Optimisation,
    *,
    until: int,
    loss_at: Callable[[int], torch.Tensor],
    description: str,
    work_dir: Path | None = None,
    key: str = "",
    checkpoint_every: int = 0,
    extra: Callable[[], dict[str, Any]] = dict,
) -> tuple[float, float]:
    """Train from ``optimisation.step`` up to step ``until``; returns (last, mean) loss.

    ``loss_at(step)`` computes the loss of that step's batch. With ``work_dir`` and
    ``checkpoint_every`` > 0, a checkpoint is written every that many steps. The mean is
    over every step since step 0, so a resumed run reports the same as an uninterrupted one.
    """
    optimisation.model.train()
    with progress_bar(description) as bar:
        task = bar.add_task(
            description, total=until, completed=optimisation.step, loss=optimisation.last_loss
        )
        while optimisation.step < until:
            with autocast_for(optimisation.model):
                loss = loss_at(optimisation.step)
            last = optimisation.apply(loss)
            bar.update(task, completed=optimisation.step, loss=last)
            if work_dir and checkpoint_every and optimisation.step % checkpoint_every == 0:
                optimisation.save(work_dir, key, extra())
            kill_point("posttrain:step")
    return optimisation.last_loss, optimisation.mean_loss
