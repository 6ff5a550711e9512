"""One process at a time per run directory: an OS file lock plus a note naming its holder.

The lock itself is ``filelock``'s (``fcntl.flock`` on POSIX): the kernel releases it when its
holder dies, even by SIGKILL, so a stale lock never blocks a rerun. Beside it,
``run.lock.json`` names the holder (pid, host, start time) so a second run can say who holds
the directory; a note left by a dead holder is reported when the lock is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from alignpt.errors import UserError
from alignpt.fileio import write_json_atomic

LOCK_FILE = "run.lock"
HOLDER_FILE = "run.lock.json"


class RunDirectoryBusy(UserError):
    """Another live process holds the run directory's lock."""

    exit_code = 75  # EX_TEMPFAIL: try again later


def _describe(holder: dict) -> str:
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"started {holder.get('started', '?')}"
    )


def _read_holder(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


@contextlib.contextmanager
def run_lock(run_dir: Path, *, say: Callable[[str], None] = print) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block, or raise RunDirectoryBusy naming the holder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / LOCK_FILE)
    note = run_dir / HOLDER_FILE
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = _read_holder(note)
        who = _describe(holder) if holder else "a process that has not yet named itself"
        raise RunDirectoryBusy(
            f"{run_dir}: another alignpt run holds this run directory ({who}); "
            "wait for it to finish or stop it"
        ) from None
    try:
        stale = _read_holder(note)
        if stale is not None and stale.get("pid") != os.getpid():
            say(f"took over the lock of {run_dir} from a process that is gone ({_describe(stale)})")
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_json_atomic(
            note, {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        )
        yield
    finally:
        note.unlink(missing_ok=True)
        lock.release()
