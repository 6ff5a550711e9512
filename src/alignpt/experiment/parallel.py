"""Independent jobs of one stage (one model per condition and seed) run side by side on a CPU.

A ~1M-parameter model cannot keep two cores busy: on a 2-core machine two single-threaded
trainings side by side do about 1.6x the work of one two-threaded training (measured in
``benchmarks/RESULTS.md``, "demo"). The jobs share nothing but read-only inputs, so the standard
library's ``ProcessPoolExecutor`` is all the machinery needed; scale beyond one machine goes
through torchrun / accelerate, not through this module.

Every CPU job runs with the same number of torch threads (``threads``, default 1) whatever the
machine's core count, so a run's numbers do not depend on how many jobs ran at once.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, TypeVar

Job = TypeVar("Job")


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(requested: int | None, n_jobs: int) -> int:
    """``requested``, else one worker per core; never more than there are jobs."""
    wanted = requested if requested is not None else available_cores()
    return max(1, min(wanted, n_jobs))


def _init_worker(threads: int) -> None:
    """Pin the worker's torch threads, and make it die with its parent.

    A worker left running after its parent is killed would go on writing into the run that a
    rerun is resuming; Linux's parent-death signal (no library offers it) prevents that.
    """
    import torch

    from alignpt.faults import mark_worker

    torch.set_num_threads(threads)
    mark_worker(os.getppid())
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _timed(fn: Callable[..., Any], args: tuple) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def run_jobs(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    *,
    workers: int,
    threads: int,
) -> Iterator[tuple[tuple, Any, float]]:
    """Yield ``(job, fn(*job), seconds)`` for every job as it finishes.

    With one worker the jobs run here, in order; otherwise in ``workers`` spawned processes
    (spawn, not fork: torch's thread pools do not survive a fork). The first failing job's
    exception is raised after the running ones are cancelled.
    """
    if workers <= 1:
        with torch_threads(threads):
            for job in jobs:
                result, seconds = _timed(fn, job)
                yield job, result, seconds
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(threads,)
    ) as pool:
        pending: dict[Future, tuple] = {pool.submit(_timed, fn, job): job for job in jobs}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    job = pending.pop(future)
                    result, seconds = future.result()
                    yield job, result, seconds
        finally:
            for future in pending:
                future.cancel()
