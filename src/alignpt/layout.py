"""The run layout: every path of an experiment run, built in one place and never parsed back.

``RunLayout(run_dir)`` names where each stage reads and writes::

    sources/<source>/            generated documents of a ``generate:`` source
    curate/<source>/documents/   a ``curate:`` source after curation
    mix/                         tokenizer, shards, condition plans (``alignpt.mixdir``)
    train/<condition>/seed<S>/   one training run; its model is ``final/``
    evals/items/                 scenario eval items; evals/heldout_<name>/ capability text
    evaluate/<condition>/seed<S>/  one model's evaluation
    trajectory/<condition>/seed<S>/step-<N>/  one checkpoint's evaluation (evals.trajectory)
    posttrain/, persistence/, adversarial/, probe_posttrain/  <condition>/seed<S>/...
    contamination/, report/, config.json, results.json

Code that needs the condition or seed of a model carries them along with its path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FINAL_MODEL = "final"


def seed_dir(seed: int) -> str:
    """The folder name of one seed's run."""
    return f"seed{seed}"


@dataclass(frozen=True)
class RunLayout:
    """Paths of one experiment run under ``run_dir`` (``runs_dir / name``)."""

    run_dir: Path

    def source_documents(self, source: str) -> Path:
        return self.run_dir / "sources" / source

    def curated(self, source: str) -> Path:
        """The curate stage's output directory of ``source`` (manifest + ``documents/``)."""
        return self.run_dir / "curate" / source

    def curated_documents(self, source: str) -> Path:
        return self.curated(source) / "documents"

    @property
    def mix(self) -> Path:
        return self.run_dir / "mix"

    def train_run(self, condition: str, seed: int) -> Path:
        return self.run_dir / "train" / condition / seed_dir(seed)

    def model(self, condition: str, seed: int) -> Path:
        """The finished pretrained model directory of one condition and seed."""
        return self.train_run(condition, seed) / FINAL_MODEL

    @property
    def eval_items(self) -> Path:
        return self.run_dir / "evals" / "items"

    def heldout_texts(self, name: str) -> Path:
        return self.run_dir / "evals" / f"heldout_{name}"

    def probe_texts(self, name: str) -> Path:
        return self.run_dir / "evals" / f"probe_{name}"

    def evaluation(self, condition: str, seed: int) -> Path:
        return self.run_dir / "evaluate" / condition / seed_dir(seed)

    def trajectory_point(self, condition: str, seed: int, step: int) -> Path:
        """One checkpoint's evaluation (``evals.trajectory``)."""
        return self.run_dir / "trajectory" / condition / seed_dir(seed) / f"step-{step:08d}"

    def stage_run(self, stage: str, condition: str, seed: int) -> Path:
        """A per-model study stage: ``posttrain``, ``persistence``, ``adversarial``, ..."""
        return self.run_dir / stage / condition / seed_dir(seed)

    @property
    def contamination(self) -> Path:
        return self.run_dir / "contamination"

    @property
    def report(self) -> Path:
        return self.run_dir / "report"

    @property
    def config_json(self) -> Path:
        return self.run_dir / "config.json"
