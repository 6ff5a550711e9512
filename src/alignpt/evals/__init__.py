"""Evaluation: eval items, scoring, suites, contamination, exports."""
