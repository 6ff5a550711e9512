"""Experiment-level pieces: the report (and, later, the runner)."""
