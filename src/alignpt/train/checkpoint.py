"""Checkpoints: a standard HF model directory plus the full trainer state, never pickled.

Layout of one checkpoint directory (written under a temporary name, then renamed)::

    step-00000120/
      model/                     safetensors + config + tokenizer + alignpt.json (provenance)
      engine_state.safetensors   the tensors of the optimizer, scheduler and per-rank RNG states
      engine_state.json          the rest of those states, each tensor a reference into the
                                 safetensors file (``alignpt.train.engine``)
      trainer_state.json         step, phase, tokens seen, per-rank loader states, what it
                                 belongs to

Checkpoints of earlier versions held a pickled ``trainer_state.pt`` instead; they are not
resumed (one line says to start over).
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
from alignpt.train.engine import STATE_JSON as ENGINE_JSON
from alignpt.train.engine import (
    legacy_checkpoint_error,
    read_state,
    write_state,
)

CHECKPOINTS = "checkpoints"  # under a training run's directory
LEGACY_STATE = "trainer_state.pt"  # earlier versions' pickled trainer state
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
    state: dict[str, Any],
    meta: dict[str, Any],
    grammar: bytes | None = None,
) -> Path:
    """Atomically write one checkpoint directory (model dir + engine state + meta) at ``dest``.

    ``state`` is the engine's (optimizer, scheduler, RNG); ``meta`` is plain JSON.
    """
    with atomic_path(dest) as tmp:
        tmp.mkdir(parents=True)
        save_model_dir(tmp / "model", model, tokenizer, provenance, model_state, grammar=grammar)
        write_state(tmp, state)
        (tmp / STATE_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return dest


def is_legacy(path: Path) -> bool:
    """Whether the checkpoint at ``path`` is in the pickled format of earlier versions."""
    return (path / LEGACY_STATE).is_file() and not (path / ENGINE_JSON).is_file()


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (engine state, JSON meta) of a checkpoint; nothing is unpickled."""
    if is_legacy(path):
        raise legacy_checkpoint_error(path / LEGACY_STATE)
    try:
        meta = json.loads((path / STATE_JSON).read_text())
    except FileNotFoundError as exc:
        raise UserError(
            f"{path}: incomplete checkpoint (missing {Path(exc.filename).name})"
        ) from None
    except (json.JSONDecodeError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: unreadable checkpoint ({reason})") from None
    return read_state(path), meta


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
    """Whether the newest checkpoint under ``root`` belongs to the run ``identity`` names
    (and is in this version's format)."""
    found = checkpoint_dirs(root)
    if not found or is_legacy(found[-1]):
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
