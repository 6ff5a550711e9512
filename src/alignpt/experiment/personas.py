"""The persona calculator per condition: evidence from what each condition trains on.

A condition's training documents are its mix plans (``mix/conditions/<c>/<phase>``): every
entry is one pass over one document of one source, so filters, upsampling, doses and
repetition are all counted as the model sees them.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from alignpt.analysis.personas import Evidence, count_evidence, persona_report
from alignpt.config import ExperimentConfig, PersonasConfig
from alignpt.documents import read_documents
from alignpt.mixdir import condition_phases, phase_dir
from alignpt.shards import DOCS_FILE


def _shard_ids(mix_dir: Path, source: str) -> list[str]:
    with gzip.open(Path(mix_dir) / "shards" / source / DOCS_FILE, "rt", encoding="utf-8") as f:
        return [json.loads(line)["id"] for line in f]


def condition_weights(mix_dir: Path, condition: str) -> dict[str, int]:
    """How many times each document id occurs in the condition's plans (all phases)."""
    weights: Counter[str] = Counter()
    for phase in condition_phases(mix_dir, condition):
        directory = phase_dir(mix_dir, condition, phase)
        sources = json.loads((directory / "plan.json").read_text())["sources"]
        source_index, doc_index = np.load(directory / "source.npy"), np.load(directory / "doc.npy")
        for k, source in enumerate(sources):
            ids = _shard_ids(mix_dir, source)
            counts = np.bincount(doc_index[source_index == k], minlength=len(ids))
            for i in np.flatnonzero(counts):
                weights[ids[i]] += int(counts[i])
    return dict(weights)


def condition_evidence(
    config: ExperimentConfig, mix_dir: Path, source_paths: dict[str, Path]
) -> dict[str, dict[str, Evidence]]:
    """Per condition, the persona evidence (pooled and per AI system) of its training docs."""
    out = {}
    for condition, spec in config.conditions.items():
        weights = condition_weights(mix_dir, condition)
        docs = (doc for name in spec.sources for doc in read_documents(source_paths[name]))
        out[condition] = count_evidence(docs, weights)
    return out


def personas_section(
    config: ExperimentConfig, mix_dir: Path, source_paths: dict[str, Path]
) -> dict[str, Any]:
    """``{"personas": {condition: persona_report}}`` for results.json."""
    settings = config.personas or PersonasConfig()
    evidence = condition_evidence(config, mix_dir, source_paths)
    return {"personas": {c: persona_report(ev, settings) for c, ev in evidence.items()}}
