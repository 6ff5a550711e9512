"""A test hook that kills the process at named points, to prove every stage survives SIGKILL.

Set ``ALIGNPT_KILL_AT=<point>`` (or ``<point>@<n>`` for the n-th time it is reached, default
the first) and the process sends itself SIGKILL there: no ``finally`` block, no atexit, no
flush runs, as with ``kill -9`` or an out-of-memory kill. Points are named
``<stage>:<where>`` (``generate:inside``, ``run:after-mix``, ``atomic:aside``, ...); the fault
matrix in ``tests/test_fault_matrix.py`` lists them. Unset (the normal case) it does nothing.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "ALIGNPT_KILL_AT"
_reached: dict[str, int] = {}
_run_pid: int | None = None  # in a worker process: the alignpt process it works for


def mark_worker(run_pid: int) -> None:
    """Record that this process works for ``run_pid``: a kill point here kills that process
    (its workers die with it), as a SIGKILL of the command the user started would."""
    global _run_pid
    _run_pid = run_pid


def kill_point(name: str) -> None:
    """SIGKILL this process if ``ALIGNPT_KILL_AT`` names this point (and its count is due)."""
    target = os.environ.get(KILL_AT_ENV)
    if not target:
        return
    point, _, nth = target.partition("@")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= int(nth or 1):
        if _run_pid is not None:
            os.kill(_run_pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
