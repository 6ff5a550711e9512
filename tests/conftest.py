"""Test-session set-up shared by every test module."""

import os

# Same policy the package sets on import (see alignpt/__init__.py), applied before any test
# module imports torch directly: spinning OpenMP threads stall when tests share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
