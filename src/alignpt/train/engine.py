"""The training engine shared by pretraining, SFT, DPO and adversarial finetuning.

One optimizer (AdamW), one autocast policy, one step (clip, optimizer, schedule) and one
resumable state, so the stages differ only in their losses and data:

- :func:`adamw` builds the optimizer; ``grouping`` picks decay on matrices only
  (pretraining) or one group with the same decay everywhere (post-training).
- :func:`autocast_context` is the precision policy: ``auto`` is bf16 on CUDA and plain fp32
  elsewhere.
- :class:`Engine` holds the parameters, optimizer, scheduler and clip norm; ``step()`` clips
  and steps, ``state()`` / ``load_state()`` capture and restore everything a resume needs.
- :func:`write_state` / :func:`read_state` store such a state without pickle: every tensor
  goes to ``engine_state.safetensors``, the structure around them (with int dict keys,
  tuples, None, bools and non-finite floats kept as they were) to ``engine_state.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from alignpt.errors import UserError
from alignpt.fileio import atomic_path

STATE_TENSORS = "engine_state.safetensors"
STATE_JSON = "engine_state.json"
FORMAT = "alignpt.engine_state/1"
Grouping = Literal["matrices", "single"]
Precision = Literal["auto", "bf16", "fp32"]


def adamw(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    grouping: Grouping,
    betas: tuple[float, float] = (0.9, 0.999),
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over ``model``'s parameters.

    ``grouping="matrices"``: weight decay on parameters with two or more dimensions, none on
    biases and norms (trainable parameters only). ``grouping="single"``: one group of every
    parameter with ``weight_decay``.
    """
    if grouping == "matrices":
        params: Any = [
            {
                "params": [p for p in model.parameters() if p.requires_grad and p.dim() >= 2],
                "weight_decay": weight_decay,
            },
            {
                "params": [p for p in model.parameters() if p.requires_grad and p.dim() < 2],
                "weight_decay": 0.0,
            },
        ]
        return torch.optim.AdamW(params, lr=lr, betas=betas, fused=fused)
    if grouping == "single":
        return torch.optim.AdamW(
            model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay, fused=fused
        )
    raise ValueError(f"adamw: unknown grouping {grouping!r}")


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``bf16``, or for ``auto`` on CUDA; nothing (fp32) otherwise."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's torch RNG states as tensors."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


class Engine:
    """Parameters, optimizer, LR scheduler and gradient clipping: one optimisation step.

    Callers compute and backpropagate their own loss between :meth:`zero_grad` and
    :meth:`step`, so gradient accumulation and DDP/FSDP gradient sync stay theirs.
    """

    def __init__(
        self,
        parameters: Iterable[torch.Tensor],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        *,
        grad_clip: float,
        device: torch.device,
    ) -> None:
        self.parameters = list(parameters)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.grad_clip = grad_clip
        self.device = device

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """Clip the gradients' global norm to ``grad_clip``, step the optimizer, then the LR."""
        torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()

    def state(
        self,
        *,
        optimizer: dict[str, Any] | None = None,
        rng: list[dict[str, torch.Tensor]] | None = None,
    ) -> dict[str, Any]:
        """What a resume needs: optimizer, scheduler and RNG states (one per rank).

        ``optimizer`` replaces this process's optimizer state (e.g. FSDP's gathered full
        state), ``rng`` this process's RNG state (e.g. every rank's, gathered).
        """
        return {
            "optimizer": self.optimizer.state_dict() if optimizer is None else optimizer,
            "scheduler": self.scheduler.state_dict(),
            "rng": [rng_state(self.device)] if rng is None else rng,
        }

    def load_state(self, state: dict[str, Any], *, rank: int = 0, optimizer: bool = True) -> None:
        """Restore :meth:`state`; ``optimizer=False`` when the caller loaded it (FSDP)."""
        if optimizer:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rngs = state["rng"]
        set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0], self.device)


# ---------------------------------------------------------------------------- state files
# A value of the JSON skeleton is plain JSON, or one of these one-key objects:
_TENSOR, _TUPLE, _DICT, _FLOAT = "__tensor__", "__tuple__", "__dict__", "__float__"
_MARKERS = frozenset({_TENSOR, _TUPLE, _DICT, _FLOAT})


def flatten_state(value: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """(JSON skeleton, tensors by name) of a nested state; every tensor a contiguous copy.

    Dicts whose keys are all strings (and no marker) stay JSON objects; any other dict
    becomes ``{"__dict__": [[key, value], ...]}`` so int keys come back as ints.
    """
    tensors: dict[str, torch.Tensor] = {}

    def encode(item: Any) -> Any:
        if isinstance(item, torch.Tensor):
            name = f"t{len(tensors)}"
            # A fresh CPU copy: safetensors refuses views and storage shared between entries.
            tensors[name] = item.detach().to("cpu", copy=True).contiguous()
            return {_TENSOR: name}
        if item is None or isinstance(item, (bool, int, str)):
            return item
        if isinstance(item, float):
            return item if math.isfinite(item) else {_FLOAT: repr(float(item))}
        if isinstance(item, tuple):
            return {_TUPLE: [encode(v) for v in item]}
        if isinstance(item, list):
            return [encode(v) for v in item]
        if isinstance(item, dict):
            if all(isinstance(k, str) for k in item) and not _MARKERS.intersection(item):
                return {k: encode(v) for k, v in item.items()}
            return {_DICT: [[encode(k), encode(v)] for k, v in item.items()]}
        raise TypeError(f"engine state: cannot store a {type(item).__name__} ({item!r:.80})")

    return encode(value), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`flatten_state`."""

    def decode(item: Any) -> Any:
        if isinstance(item, list):
            return [decode(v) for v in item]
        if not isinstance(item, dict):
            return item
        if len(item) == 1:
            ((marker, inner),) = item.items()
            if marker == _TENSOR:
                return tensors[inner]
            if marker == _TUPLE:
                return tuple(decode(v) for v in inner)
            if marker == _DICT:
                return {decode(k): decode(v) for k, v in inner}
            if marker == _FLOAT:
                return float(inner)
        return {k: decode(v) for k, v in item.items()}

    return decode(skeleton)


def write_state(directory: Path, state: Any) -> None:
    """Write ``state`` as ``engine_state.safetensors`` + ``engine_state.json`` in ``directory``.

    Each file is written under a temporary name and renamed; the JSON (which names the
    tensors) goes last, so a directory whose JSON exists has its tensors too.
    """
    from safetensors.torch import save_file

    skeleton, tensors = flatten_state(state)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / STATE_TENSORS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    with atomic_path(directory / STATE_JSON) as tmp:
        document = {"format": FORMAT, "state": skeleton}
        tmp.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")


def read_state(directory: Path, device: torch.device | str = "cpu") -> Any:
    """The state :func:`write_state` wrote in ``directory`` (tensors on ``device``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    for name in (STATE_JSON, STATE_TENSORS):
        if not (directory / name).is_file():
            raise UserError(f"{directory}: incomplete checkpoint (missing {name})")
    try:
        document = json.loads((directory / STATE_JSON).read_text())
        tensors = load_file(directory / STATE_TENSORS, device=str(device))
    except (json.JSONDecodeError, SafetensorError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{directory}: unreadable checkpoint ({reason})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UserError(f"{directory / STATE_JSON}: not an alignpt engine state ({FORMAT})")
    try:
        return unflatten_state(document["state"], tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{directory}: unreadable checkpoint (bad engine state: {exc})") from None


def legacy_checkpoint_error(path: Path) -> UserError:
    """The one line for a checkpoint in the pickled format of earlier alignpt versions."""
    return UserError(
        f"{path}: checkpoint in the old pickled format, which this version does not resume; "
        "start the run over with --force"
    )
