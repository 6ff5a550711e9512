"""Checkpoints: a standard HF model directory plus the full trainer state, never pickled.

Layout of one checkpoint directory (written under a temporary name, then renamed)::

    step-00000120/
      model/               safetensors + config + tokenizer + alignpt.json (provenance)
      trainer_state.pt     optimizer, scheduler, per-rank RNG: tensors and plain values only,
                           read back with ``torch.load(weights_only=True)``
      trainer_state.json   step, phase, tokens seen, per-rank loader states, what it belongs to
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from alignpt.errors import UserError
from alignpt.fileio import atomic_path
from alignpt.modeldir import save_model_dir

CHECKPOINTS = "checkpoints"  # under a training run's directory
STATE_PT = "trainer_state.pt"
STATE_JSON = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
# Fields of the run a checkpoint must share with the run that resumes from it.
IDENTITY_FIELDS = ("condition", "preset", "seed", "mix_manifest_hash", "train_hash", "world_size")


def write_checkpoint(
    dest: Path,
    *,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    provenance: dict[str, Any],
    model_state: dict[str, torch.Tensor] | None,
    tensors: dict[str, Any],
    meta: dict[str, Any],
    grammar: bytes | None = None,
) -> Path:
    """Atomically write one checkpoint directory (model dir + trainer state) at ``dest``."""
    with atomic_path(dest) as tmp:
        tmp.mkdir(parents=True)
        save_model_dir(tmp / "model", model, tokenizer, provenance, model_state, grammar=grammar)
        torch.save(tensors, tmp / STATE_PT)
        (tmp / STATE_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return dest


def read_checkpoint(path: Path, device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (tensor state, JSON meta) of a checkpoint; tensors load without unpickling code."""
    try:
        meta = json.loads((path / STATE_JSON).read_text())
        tensors = torch.load(path / STATE_PT, map_location=device, weights_only=True)
    except FileNotFoundError as exc:
        raise UserError(
            f"{path}: incomplete checkpoint (missing {Path(exc.filename).name})"
        ) from None
    except (json.JSONDecodeError, RuntimeError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: unreadable checkpoint ({reason})") from None
    return tensors, meta


def checkpoint_dirs(root: Path) -> list[Path]:
    """Finished checkpoint directories under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _STEP_DIR.match(p.name)) and (p / STATE_JSON).is_file()
    ]
    return [p for _, p in sorted(found)]


def resumable(root: Path, identity: dict[str, Any]) -> bool:
    """Whether the newest checkpoint under ``root`` belongs to the run ``identity`` names."""
    found = checkpoint_dirs(root)
    if not found:
        return False
    meta = json.loads((found[-1] / STATE_JSON).read_text())
    return all(meta.get(field) == identity.get(field) for field in IDENTITY_FIELDS)


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def check_identity(path: Path, meta: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse to resume from a checkpoint of another condition, preset, seed, mix or config."""
    for field in IDENTITY_FIELDS:
        if meta.get(field) != expected.get(field):
            got, want = meta.get(field), expected.get(field)
            if isinstance(got, str) and len(got) == 64:
                got, want = got[:12], str(want)[:12]
            raise UserError(
                f"{path}: checkpoint belongs to {field} '{got}', this run has '{want}'; "
                "start it over with `alignpt run --force` (or `alignpt train --force` without "
                "--resume), or use another out dir"
            )


def prune_checkpoints(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` interval checkpoints; phase-end ones stay."""
    interval = []
    for path in checkpoint_dirs(root):
        meta = json.loads((path / STATE_JSON).read_text())
        if not meta.get("phase_end"):
            interval.append(path)
    for path in interval[:-keep] if keep else interval:
        shutil.rmtree(path, ignore_errors=True)


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
