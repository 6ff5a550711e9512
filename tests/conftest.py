"""Test-session set-up shared by every test module."""

import os

# Same policy the package sets on import (see alignpt/__init__.py), applied before any test
# module imports torch directly: spinning OpenMP threads stall when tests share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread_no_progress():
    """One intra-op thread and no progress bars for a module's tiny-model training runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    previous = os.environ.get("ALIGNPT_NO_PROGRESS")
    os.environ["ALIGNPT_NO_PROGRESS"] = "1"
    yield
    torch.set_num_threads(threads)
    if previous is None:
        del os.environ["ALIGNPT_NO_PROGRESS"]
    else:
        os.environ["ALIGNPT_NO_PROGRESS"] = previous
