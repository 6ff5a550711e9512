"""The pretraining loop: phases in order, AdamW, schedule, clipping, accumulation, validation,
TensorBoard, a live progress bar and checkpoints that resume bit-exactly.

The loop takes a *loader factory* (``phase -> loader`` for this rank) so it runs on the mix's
``TokenWindowLoader`` or any object with ``__iter__`` yielding ``(batch, seq_len + 1)``
LongTensors plus ``state_dict()`` / ``load_state_dict()``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

from alignpt.config import TrainConfig
from alignpt.errors import UserError
from alignpt.faults import kill_point
from alignpt.fileio import atomic_path
from alignpt.layout import FINAL_MODEL
from alignpt.train import checkpoint as ckpt
from alignpt.train.chunked_loss import ChunkedLossLM
from alignpt.train.distributed import (
    DistContext,
    barrier,
    gather_from_ranks,
    mean_across_ranks,
    wrap_model,
)
from alignpt.train.engine import Engine, adamw, autocast_context, rng_state
from alignpt.train.flops import flops_per_token, mfu, peak_flops
from alignpt.train.schedule import PhasePlan, make_scheduler, micro_batch_size, tokens_per_step

METRICS = "metrics.jsonl"
FINAL = FINAL_MODEL


class WindowLoader(Protocol):
    """What the loop needs from a loader (the mix contract's ``TokenWindowLoader``)."""

    def __iter__(self) -> Iterator[torch.Tensor]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


LoaderFactory = Callable[[str], WindowLoader]


@dataclass
class RunSpec:
    """Everything the loop needs to know about one training run besides model and data."""

    out_dir: Path
    train: TrainConfig
    seq_len: int
    plan: list[PhasePlan]
    identity: dict[str, Any]  # condition, preset, seed, mix_manifest_hash, train_hash, world_size
    progress: bool = True
    extra_provenance: dict[str, Any] = field(default_factory=dict)
    grammar: bytes | None = None  # the mix's mode grammar, kept in every model directory


@dataclass
class _Position:
    phase_index: int = 0
    phase_step: int = 0
    step: int = 0
    tokens_seen: int = 0
    loader_states: list[dict[str, Any]] | None = None


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of ``targets`` under ``logits``, computed in fp32."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))


def validation_loss(
    model: nn.Module,
    windows: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> float:
    """Mean next-token cross-entropy (nats) over ``(n, seq_len + 1)`` windows."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            batch = windows[start : start + batch_size].to(device)
            with autocast():
                logits = model(input_ids=batch[:, :-1], use_cache=False).logits
            loss = F.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)),
                batch[:, 1:].reshape(-1),
                reduction="sum",
            )
            total += loss.item()
            count += batch[:, 1:].numel()
    model.train(was_training)
    return total / max(count, 1)


class Trainer:
    """Runs one :class:`RunSpec` on one rank; rank 0 writes logs and checkpoints."""

    def __init__(
        self,
        model: LlamaForCausalLM,
        tokenizer: PreTrainedTokenizerBase,
        spec: RunSpec,
        make_loader: LoaderFactory,
        ctx: DistContext,
        *,
        validation: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.raw_model = model.to(ctx.device)
        self.tokenizer = tokenizer
        self.spec = spec
        self.train = spec.train
        self.make_loader = make_loader
        self.ctx = ctx
        self.validation = validation or {}
        self.vocab_size = model.config.vocab_size
        self.micro_batch = micro_batch_size(self.train, ctx.world_size)
        self.tokens_per_step = tokens_per_step(self.train, spec.seq_len)
        self.total_steps = sum(p.steps for p in spec.plan)
        self.ckpt_root = spec.out_dir / ckpt.CHECKPOINTS
        compile_model = (
            self.train.compile if self.train.compile is not None else ctx.device.type == "cuda"
        )
        if ctx.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 for what autocast leaves in fp32
        self.fsdp = ctx.distributed and self.train.distributed == "fsdp"
        self.chunked = self.train.loss == "chunked"
        if self.chunked and self.fsdp:
            raise UserError(
                "train.loss: 'chunked' runs on one device or with DDP, not with "
                "train.distributed: fsdp (its output head stays sharded outside the model)"
            )
        if self.fsdp:  # FSDP2: shard the plain modules, then compile the sharded model
            self.model = wrap_model(self.raw_model, ctx, "fsdp")
            if compile_model:
                self.model = torch.compile(self.model)
        else:  # DDP over the compiled module, as in PyTorch's DDP + compile recipe
            base = (
                ChunkedLossLM(self.raw_model, self.train.loss_chunk_tokens)
                if self.chunked
                else self.raw_model
            )
            step_model = torch.compile(base) if compile_model else base
            self.model = wrap_model(step_model, ctx, "ddp")
        # Validation needs logits: the chunked wrapper only returns a loss.
        self.eval_model = self.raw_model if self.chunked else self.model
        # Compiled, the fp32 upcast of the logits fuses into the loss kernel (no fp32 copy).
        self.loss_fn = torch.compile(next_token_loss) if compile_model else next_token_loss
        # After wrapping: FSDP replaces the parameters with sharded ones.
        optimizer = adamw(
            self.model,
            lr=self.train.lr,
            weight_decay=self.train.weight_decay,
            grouping="matrices",
            betas=(self.train.beta1, self.train.beta2),
            fused=ctx.device.type == "cuda" or None,
        )
        self.engine = Engine(
            self.model.parameters(),
            optimizer,
            make_scheduler(optimizer, self.train, self.total_steps),
            grad_clip=self.train.grad_clip,
            device=ctx.device,
        )
        self.optimizer, self.scheduler = optimizer, self.engine.scheduler
        self.flops_per_token = flops_per_token(model.config, spec.seq_len)
        self.peak = peak_flops(ctx.device, self.train.peak_flops)
        self.writer: SummaryWriter | None = None

    # ----------------------------------------------------------------------------- steps
    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast_context(self.train.precision, self.ctx.device)

    def _grad_sync(self, enabled: bool) -> contextlib.AbstractContextManager:
        if not self.ctx.distributed or enabled:
            return contextlib.nullcontext()
        if self.fsdp:
            return _fsdp_no_sync(self.model)
        return self.model.no_sync()

    def _next_batch(self, batches: Iterator[torch.Tensor], phase: str) -> torch.Tensor:
        batch = next(batches)
        expected = (self.micro_batch, self.spec.seq_len + 1)
        if tuple(batch.shape) != expected:
            raise UserError(
                f"loader for phase '{phase}' yields batches of shape {tuple(batch.shape)}, "
                f"expected {expected}"
            )
        top = int(batch.max())
        if top >= self.vocab_size:
            raise UserError(
                f"phase '{phase}': shards hold token id {top} but the tokenizer/model has "
                f"{self.vocab_size} tokens; the tokenizer does not match the shards"
            )
        return batch.to(self.ctx.device, non_blocking=True)

    def train_step(self, batches: Iterator[torch.Tensor], phase: str) -> torch.Tensor:
        """One optimizer step over ``grad_accum`` micro-batches; returns the mean loss."""
        self.engine.zero_grad()
        accum = self.train.grad_accum
        total = torch.zeros((), device=self.ctx.device)
        for micro in range(accum):
            batch = self._next_batch(batches, phase)
            with self._grad_sync(micro == accum - 1):
                if self.chunked:  # the output head runs inside the loss, under autocast
                    with self._autocast():
                        loss = self.model(batch[:, :-1], batch[:, 1:])
                else:
                    with self._autocast():
                        logits = self.model(input_ids=batch[:, :-1], use_cache=False).logits
                    loss = self.loss_fn(logits, batch[:, 1:])
                (loss / accum).backward()
            total += loss.detach()
        self.engine.step()
        return total / accum

    # ------------------------------------------------------------------------ run
    def run(self, *, resume: bool = False) -> Path:
        """Train every phase to the end and return the final HF model directory."""
        position = self._restore() if resume else _Position()
        if self.ctx.is_main:
            self.writer = SummaryWriter(
                self.spec.out_dir / "tensorboard", purge_step=position.step or None
            )
            _truncate_metrics(self.spec.out_dir / METRICS, position.step)
        try:
            with self._progress() as progress:
                task = progress.add_task(
                    "train", total=self.total_steps, completed=position.step, rate="", mfu=""
                )
                self._run_phases(position, progress, task)
        finally:
            if self.writer is not None:
                self.writer.close()
        return self._write_final(position)

    def _run_phases(self, pos: _Position, progress: Progress, task: Any) -> None:
        for index in range(pos.phase_index, len(self.spec.plan)):
            phase = self.spec.plan[index]
            pos.phase_index = index
            if pos.phase_step >= phase.steps:  # resumed from this phase's end checkpoint
                pos.phase_step, pos.loader_states = 0, None
                continue
            loader = self.make_loader(phase.name)
            if pos.loader_states is not None:
                loader.load_state_dict(pos.loader_states[self.ctx.rank])
                pos.loader_states = None
            batches = iter(loader)
            window: list[torch.Tensor] = []
            clock = time.perf_counter()
            while pos.phase_step < phase.steps:
                window.append(self.train_step(batches, phase.name))
                kill_point("train:step")
                pos.step += 1
                pos.phase_step += 1
                pos.tokens_seen += self.tokens_per_step
                phase_end = pos.phase_step == phase.steps
                checkpoint = pos.step % self.train.checkpoint_interval == 0 or phase_end
                if pos.step % self.train.log_interval == 0 or checkpoint:
                    clock = self._log(pos, phase.name, window, clock, progress, task)
                    window = []
                if pos.step % self.train.eval_interval == 0 or phase_end:
                    self._validate(pos.step)
                if checkpoint:
                    self._checkpoint(pos, loader, phase.name, phase_end)
                    clock = time.perf_counter()
            pos.phase_step = 0

    def _log(
        self,
        pos: _Position,
        phase: str,
        losses: list[torch.Tensor],
        since: float,
        progress: Progress,
        task: Any,
    ) -> float:
        stacked = mean_across_ranks(torch.stack(losses), self.ctx).tolist()
        now = time.perf_counter()
        tokens_per_s = len(losses) * self.tokens_per_step / max(now - since, 1e-9)
        utilisation = mfu(tokens_per_s / self.ctx.world_size, self.flops_per_token, self.peak)
        if self.ctx.is_main:
            lr = self.scheduler.get_last_lr()[0]
            first = pos.step - len(stacked) + 1
            records = []
            for offset, loss in enumerate(stacked):
                step = first + offset
                self.writer.add_scalar("train/loss", loss, step)
                records.append({"step": step, "phase": phase, "loss": loss})
            self.writer.add_scalar("train/lr", lr, pos.step)
            self.writer.add_scalar("train/tokens_per_s", tokens_per_s, pos.step)
            self.writer.add_scalar("train/tokens_seen", pos.tokens_seen, pos.step)
            if utilisation is not None:
                self.writer.add_scalar("train/mfu", utilisation, pos.step)
            records[-1].update(lr=lr, tokens_per_s=tokens_per_s, tokens_seen=pos.tokens_seen)
            _append_metrics(self.spec.out_dir / METRICS, records)
            mfu_text = f"{utilisation:.1%}" if utilisation is not None else "n/a"
            progress.update(
                task,
                completed=pos.step,
                description=f"{phase} loss {stacked[-1]:.3f}",
                rate=f"{tokens_per_s:,.0f} tok/s",
                mfu=f"MFU {mfu_text}",
            )
        return time.perf_counter()

    def _validate(self, step: int) -> None:
        if not self.validation:
            return
        results = {
            name: validation_loss(
                self.eval_model,
                windows,
                batch_size=self.micro_batch,
                device=self.ctx.device,
                autocast=self._autocast,
            )
            for name, windows in self.validation.items()
        }
        if self.ctx.is_main:
            for name, value in results.items():
                self.writer.add_scalar(f"val/{name}", value, step)
            _append_metrics(
                self.spec.out_dir / METRICS,
                [{"step": step, **{f"val/{k}": v for k, v in results.items()}}],
            )

    # ------------------------------------------------------------------ checkpoints
    def provenance(self, pos: _Position, phase: str) -> dict[str, Any]:
        ident = self.spec.identity
        return {
            "condition": ident["condition"],
            "mix_manifest_hash": ident["mix_manifest_hash"],
            "tokens_seen": pos.tokens_seen,
            "phase": phase,
            "parent_model": None,  # pretrained from scratch
            "preset": ident["preset"],
            "seed": ident["seed"],
            "step": pos.step,
            "train_hash": ident["train_hash"],
            "parameters": sum(p.numel() for p in self.raw_model.parameters()),
            **self.spec.extra_provenance,
        }

    def _gathered_states(self, loader: WindowLoader) -> list[Any]:
        local = {"loader": loader.state_dict(), "rng": rng_state(self.ctx.device)}
        return gather_from_ranks(local, self.ctx)

    def _checkpoint(
        self, pos: _Position, loader: WindowLoader, phase: str, phase_end: bool
    ) -> None:
        per_rank = self._gathered_states(loader)
        model_state, optim_state = self._full_states()
        if self.ctx.is_main:
            meta = {
                **self.spec.identity,
                "step": pos.step,
                "phase": phase,
                "phase_index": pos.phase_index,
                "phase_step": pos.phase_step,
                "phase_end": phase_end,
                "tokens_seen": pos.tokens_seen,
                "loaders": [state["loader"] for state in per_rank],
            }
            state = self.engine.state(
                optimizer=optim_state, rng=[rank_state["rng"] for rank_state in per_rank]
            )
            ckpt.write_checkpoint(
                self.ckpt_root / ckpt.step_dir_name(pos.step),
                model=self.raw_model,
                tokenizer=self.tokenizer,
                provenance=self.provenance(pos, phase),
                model_state=model_state,
                state=state,
                meta=meta,
                grammar=self.spec.grammar,
            )
            ckpt.prune_checkpoints(self.ckpt_root, self.train.keep_checkpoints)
        barrier(self.ctx)

    def _full_states(self) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
        if not self.fsdp:
            return None, self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_state, optim_state = get_state_dict(self.model, self.optimizer, options=options)
        if self.raw_model.config.tie_word_embeddings:
            model_state.pop("lm_head.weight", None)  # saved once, as the input embedding
        return model_state, optim_state

    def _restore(self) -> _Position:
        found = ckpt.checkpoint_dirs(self.ckpt_root)
        if not found:
            return _Position()
        path = found[-1]
        state, meta = ckpt.read_checkpoint(path)
        ckpt.check_identity(path, meta, self.spec.identity)
        weights = _read_weights(path / "model")
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_state_dict,
            )

            set_state_dict(
                self.model,
                self.optimizer,
                model_state_dict=weights,
                optim_state_dict=state["optimizer"],
                options=StateDictOptions(full_state_dict=True, strict=False),
            )
        else:
            missing, unexpected = self.raw_model.load_state_dict(weights, strict=False)
            tied = {"lm_head.weight"} if self.raw_model.config.tie_word_embeddings else set()
            if unexpected or set(missing) - tied:
                raise UserError(f"{path}/model: weights do not fit this model's preset")
        self.engine.load_state(state, rank=self.ctx.rank, optimizer=not self.fsdp)
        return _Position(
            phase_index=meta["phase_index"],
            phase_step=meta["phase_step"],
            step=meta["step"],
            tokens_seen=meta["tokens_seen"],
            loader_states=meta["loaders"],
        )

    def _write_final(self, pos: _Position) -> Path:
        final = self.spec.out_dir / FINAL
        model_state, _ = self._full_states() if self.fsdp else (None, None)
        if self.ctx.is_main:
            with atomic_path(final) as tmp:
                phase = self.spec.plan[-1].name
                ckpt.save_model_dir(
                    tmp,
                    self.raw_model,
                    self.tokenizer,
                    self.provenance(pos, phase),
                    model_state,
                    grammar=self.spec.grammar,
                )
        barrier(self.ctx)
        return final

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[mfu]}"),
            TimeRemainingColumn(),
            disable=not (self.spec.progress and self.ctx.is_main),
        )


@contextlib.contextmanager
def _fsdp_no_sync(model: nn.Module) -> Iterator[None]:
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _read_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of an HF safetensors directory (one file or shards)."""
    weights: dict[str, torch.Tensor] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        weights.update(load_file(file))
    if not weights:
        raise UserError(f"{model_dir}: no safetensors weights")
    return weights


def _append_metrics(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("a") as handle:
        for record in records:
            handle.write(json.dumps(record, sort_keys=True) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics logged after ``step`` (the part of a killed run that resume repeats)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))
