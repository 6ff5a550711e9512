"""Atomic writes, hashing and run manifests shared by every stage.

Finished work is never half-written: files and directories are produced under a temporary
name beside the destination and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from alignpt.errors import UserError
from alignpt.faults import kill_point

MANIFEST = "manifest.json"
# Manifest fields that describe how a run went, not what it produced; left out of content hashes.
VOLATILE_KEYS = frozenset({"argv", "seconds", "reused", "timings"})
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """Hex sha256 of a JSON-serialisable value in canonical form (sorted keys)."""
    payload = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# ``.<name>.tmp-<pid>-<ns>``: output being written; ``.<name>.old-<pid>-<ns>``: the previous
# output of ``<name>`` moved aside while the new one is renamed in.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-\d+$")


def _temporary_name(dest: Path, kind: str) -> Path:
    return dest.with_name(f".{dest.name}.{kind}-{os.getpid()}-{time.monotonic_ns()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; move it onto ``dest`` on success.

    Works for a file or a directory written at the yielded path; a directory replaces an
    existing directory, but a file never does (UserError). On error the temporary is removed
    and ``dest`` is left untouched. A directory is replaced in three steps (old moved aside,
    new renamed in, old deleted), so at every instant either the old or the new output exists
    under a known name; ``recover_aside`` (run on entry here and by ``clean_temporaries``)
    puts an old directory back if a kill struck between the first two steps.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover_aside(dest)
    tmp = _temporary_name(dest, "tmp")
    try:
        yield tmp
        kill_point("atomic:written")
        if dest.is_dir() and not dest.is_symlink():
            if not tmp.is_dir():  # never replace a directory by a file: that loses its contents
                raise UserError(f"{dest}: is a directory; give a file path")
            aside = _temporary_name(dest, "old")
            os.replace(dest, aside)
            kill_point("atomic:aside")
            os.replace(tmp, dest)
            kill_point("atomic:replaced")
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        _remove(tmp)


def recover_aside(dest: Path) -> list[str]:
    """Finish an interrupted replacement of ``dest`` by a dead process; say what was done.

    An old copy moved aside is renamed back when ``dest`` is missing (the new one never got
    in), and deleted when ``dest`` exists (the new one did).
    """
    done = []
    asides = sorted(
        path
        for path in dest.parent.glob(f".{glob.escape(dest.name)}.old-*")
        if (match := _TEMPORARY.match(path.name)) and not pid_alive(int(match["pid"]))
    )
    for aside in asides:
        if not dest.exists() and not dest.is_symlink():
            os.replace(aside, dest)
            done.append(f"restored {dest} from {aside.name}")
        else:
            _remove(aside)
            done.append(f"removed {aside}")
    return done


def clean_temporaries(root: str | Path) -> list[str]:
    """Remove the temporaries under ``root`` left by dead processes; one line per action.

    Temporaries of live processes (another command writing there now) are left alone.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    done: list[str] = []
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        for name in sorted([*dirnames, *filenames]):
            match = _TEMPORARY.match(name)
            if match is None or pid_alive(int(match["pid"])):
                continue
            if match["kind"] == "old":
                done += recover_aside(here / match["name"])
            elif (here / name).exists():
                _remove(here / name)
                done.append(f"removed {here / name}")
        dirnames[:] = [d for d in dirnames if not _TEMPORARY.match(d)]
    return done


def ensure_writable(directory: Path) -> None:
    """Create ``directory`` and prove it is writable, or raise one clear line."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UserError(f"{directory}: output directory is not writable ({exc.strerror})") from None


def check_output_file(path: Path, *, force: bool, option: str = "--out") -> None:
    """Before any work: ``path`` can be written as a new file, or replaced with ``force``."""
    if path.is_dir():
        raise UserError(f"{option} {path}: is a directory; give a file path")
    if path.exists() and not force:
        raise UserError(f"{option} {path}: already exists; pass --force to replace it")
    _check_creatable(path, path.parent, option)


def check_output_dir(path: Path, *, option: str = "--out") -> None:
    """Before any work: ``path`` is, or can be created as, a writable directory."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: exists and is not a directory")
    _check_creatable(path, path, option)


def _check_creatable(path: Path, parent: Path, option: str) -> None:
    """The nearest existing ancestor of ``parent`` is a writable directory."""
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{option} {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: {parent} is not writable")


def write_json_atomic(path: str | Path, value: Any) -> None:
    """Write ``value`` as pretty JSON to ``path`` via a temporary file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def package_versions(
    names: tuple[str, ...] = ("alignpt", "torch", "transformers", "tokenizers", "datatrove"),
) -> dict[str, str]:
    """Installed versions of the packages that shape a result."""
    return dict(_package_versions(names))


@functools.cache
def _package_versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Looked up once per process: each ``metadata.version`` scans every ``sys.path``
    entry's distributions (milliseconds each, a noticeable share of a cached re-run), and
    the installed versions do not change while a process runs."""
    versions = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return tuple(versions.items())


def build_manifest(
    stage: str,
    *,
    config: Any,
    counts: dict[str, Any],
    files: list[Path] | None = None,
    seed: int | None = None,
    inputs: dict[str, str] | None = None,
    key: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The manifest every stage writes: config hash, inputs, counts, file hashes, versions.

    ``config_hash`` is the stage's completion key (``alignpt.completion``): ``key`` when the
    stage derives it from more than ``config`` (e.g. its inputs' hashes), else the config's.
    """
    manifest: dict[str, Any] = {
        "stage": stage,
        "config": config,
        "config_hash": key if key is not None else sha256_json(config),
        "seed": seed,
        "inputs": inputs or {},
        "counts": counts,
        "files": {p.name: sha256_file(p) for p in sorted(files or [])},
        "versions": package_versions(),
        "argv": sys.argv[1:],
    }
    manifest.update(extra)
    return manifest


def manifest_content_hash(directory: str | Path) -> str:
    """sha256 of a stage's manifest without its volatile fields: equal for equal outputs."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise UserError(f"{Path(directory) / MANIFEST}: missing; the stage has not finished")
    return sha256_json({k: v for k, v in manifest.items() if k not in VOLATILE_KEYS})


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The manifest of a finished stage directory, or None if there is none."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def read_jsonl(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (``file:line``, object) for every non-blank line of a JSONL file.

    One clear line (``UserError``) for a missing file, a line that is not JSON or not an
    object, or text that is not UTF-8. Documents have their own lenient reader
    (``documents.iter_records``) that also reads compressed files and reports bad lines.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with open(path, encoding="utf-8") as handle:
        try:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{where}: invalid JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise UserError(f"{where}: expected a JSON object")
                yield where, record
        except UnicodeDecodeError:
            raise UserError(f"{path}: not valid UTF-8") from None
