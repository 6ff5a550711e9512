"""Jobs run side by side in worker processes: results, threads, and errors come back intact."""

from __future__ import annotations

import pytest

from alignpt.errors import ConfigError, UserError
from alignpt.experiment.parallel import run_jobs, worker_count


def square_with_threads(x: int) -> tuple[int, int]:
    import torch

    return x * x, torch.get_num_threads()


def fail(kind: str) -> None:
    if kind == "config":
        raise ConfigError(["a.yaml: x: bad", "a.yaml: y: worse"])
    raise UserError(f"{kind}: one clear line")


@pytest.mark.parametrize("workers", [1, 2])
def test_every_job_returns_once_with_the_requested_threads(workers: int) -> None:
    jobs = [(x,) for x in range(5)]
    finished = list(run_jobs(square_with_threads, jobs, workers=workers, threads=1))
    assert sorted((job[0], result) for job, result, _ in finished) == [
        (x, (x * x, 1)) for x in range(5)
    ]
    assert all(seconds >= 0 for _, _, seconds in finished)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_user_error_in_a_worker_reaches_the_caller_whole(workers: int) -> None:
    with pytest.raises(UserError, match=r"^bad: one clear line$"):
        list(run_jobs(fail, [("bad",)], workers=workers, threads=1))
    with pytest.raises(ConfigError) as caught:
        list(run_jobs(fail, [("config",), ("config",)], workers=workers, threads=1))
    assert caught.value.problems == ["a.yaml: x: bad", "a.yaml: y: worse"]


def test_worker_count_is_bounded_by_jobs_and_request() -> None:
    assert worker_count(None, 1) == 1
    assert worker_count(3, 2) == 2
    assert worker_count(1, 8) == 1
