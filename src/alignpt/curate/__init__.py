"""The curate stage: detect AI discourse and stance in a corpus; filter, upsample, tag, disclose.

Runs as datatrove pipelines on the executor an ``executor:`` block selects (``alignpt.executors``).
"""

from alignpt.curate.pipeline import CurateResult, run_curate

__all__ = ["CurateResult", "run_curate"]
