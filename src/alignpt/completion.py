"""Stage completion: one way to mark a stage's output finished, and to skip or redo it.

A stage writes its output under a temporary name (``fileio.atomic_path``) and, last, a
``manifest.json`` whose ``config_hash`` is the stage's *completion key*: the hash of its
settings and of its inputs' hashes. An output counts as finished exactly when its manifest
carries the key the stage would write now; anything else is redone (or refused, when it
would overwrite a different run without ``--force``). This is the role datatrove's
completion markers play for its pipeline tasks, at the level of a whole stage.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from alignpt.errors import UserError
from alignpt.faults import kill_point
from alignpt.fileio import (
    MANIFEST,
    atomic_path,
    build_manifest,
    read_manifest,
    sha256_json,
    write_json_atomic,
)

KEY_FIELD = "config_hash"
RESULT = "result.json"


def completion_key(settings: Any) -> str:
    """The completion key of a stage run with ``settings`` (settings + input hashes)."""
    return sha256_json(settings)


def is_complete(out: str | Path, key: str) -> bool:
    """True if ``out`` holds the finished output of the stage run keyed ``key``."""
    out = Path(out)
    manifest = read_manifest(out) if out.is_dir() else None
    return bool(manifest and manifest.get(KEY_FIELD) == key)


def prepare_output_dir(out: str | Path, config_hash: str, *, force: bool = False) -> bool:
    """Decide what to do with an output directory before a stage writes into it.

    Returns True if ``out`` already holds the finished output of the same config (skip).
    Raises UserError if it holds a different run (unless ``force``) or unrelated files. With
    ``force`` nothing is deleted here: a run that fails keeps the previous output.
    """
    out = Path(out)
    if not out.exists():
        return False
    if not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    manifest = read_manifest(out)
    if is_complete(out, config_hash) and not force:
        return True
    if force:  # the stage's atomic_path replaces ``out`` only once the new output is complete
        return False
    if manifest is not None:
        raise UserError(
            f"{out}: already holds a different run (config hash "
            f"{str(manifest.get('config_hash'))[:12]}); choose another --out or pass --force"
        )
    if any(out.iterdir()):
        raise UserError(
            f"{out}: directory is not empty and holds no alignpt manifest; "
            "choose another --out or pass --force"
        )
    return False


def cached_result(
    out: Path, stage: str, config: dict[str, Any], compute: Callable[[], Any]
) -> tuple[Any, bool]:
    """``out/result.json`` if its manifest matches ``config``, else ``compute()`` saved there.

    Returns ``(result, reused)``. The directory is written under a temporary name and renamed,
    so an interrupted stage is recomputed, never mistaken for a finished one.
    """
    if is_complete(out, completion_key(config)):
        return json.loads((Path(out) / RESULT).read_text()), True
    result = compute()
    kill_point(f"{stage}:inside")
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        write_json_atomic(tmp / RESULT, result)
        write_json_atomic(
            tmp / MANIFEST,
            build_manifest(stage, config=config, counts={}, files=[tmp / RESULT]),
        )
    return result, False


def record_matches(record: Path, expected: Mapping[str, Any], fields: Iterable[str]) -> bool:
    """Whether the JSON file ``record`` exists and agrees with ``expected`` on ``fields``
    (e.g. a finished model's provenance against the run that would make it now)."""
    if not record.is_file():
        return False
    done = json.loads(record.read_text())
    return all(done.get(field) == expected.get(field) for field in fields)


def prepare_resumable_dir(
    out: Path,
    *,
    finished: bool,
    resume: bool,
    force: bool,
    can_resume: Callable[[], bool],
    what: str = "run",
) -> bool:
    """Decide what to do with the directory of a resumable (checkpointing) stage.

    ``finished``: ``out`` holds this run's finished output (see :func:`record_matches`).
    Returns True to reuse it. Otherwise clears ``out`` when ``force`` asks to start over
    (with ``resume`` too, an unfinished run ``can_resume()`` accepts is kept and resumed),
    refuses a busy ``out`` without ``resume`` or ``force``, and returns False.
    """
    # ``alignpt run`` passes resume and force together: force then replaces only what came from
    # another config and still reuses a finished output of this one.
    if finished and (resume or not force):
        return True
    busy = out.is_dir() and any(out.iterdir())
    if busy and force and not (resume and can_resume()):
        shutil.rmtree(out)
    elif busy and not resume:
        raise UserError(
            f"{out}: holds another or an unfinished {what}; pass --resume to continue it or "
            "--force to start over"
        )
    return False
