"""The placement study's arms train on different tokens, give different models and are
scored and reported each from its own evaluation.

Guards the path behind the placement study (``configs/placement.yaml``): when two arms show
the same held-out rate, it must be because the models chose alike, never because the arms
read the same tokens, share weights, share an evaluation cache entry or read another arm's
results block.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from alignpt.analysis.stats import item_misaligned
from alignpt.config import ExperimentConfig, parse_model
from alignpt.experiment.runner import run_experiment
from alignpt.experiment.studies import study_x
from alignpt.items import read_items
from alignpt.mixdir import TokenWindowLoader, phase_budgets
from alignpt.train.schedule import plan_phases
from tiny_experiment import tiny_experiment

ARMS = ("baseline", "from_start", "late", "finetune")


def placement_config(runs_dir: Path) -> ExperimentConfig:
    """``configs/placement.yaml`` in miniature: one aligned dose placed four ways."""
    data = tiny_experiment(runs_dir, name="tiny-placement", seq_len=32)
    common = {"background": {}, "discourse": {}}
    data["conditions"] = {
        "baseline": {"sources": common},
        "from_start": {"sources": {**common, "aligned": {"dose_share": 0.1}}},
        "late": {"sources": {**common, "aligned": {"phase": "late", "dose_share": 0.5}}},
        "finetune": {"sources": {**common, "aligned": {"phase": "finetune"}}},
    }
    data["train"].update(late_fraction=0.2, finetune_tokens=600, checkpoint_interval=1000)
    data["evals"].update(items_per_family=3, suites=["misalignment"])
    data["study"] = {"kind": "placement"}
    return parse_model(ExperimentConfig, data, "tiny-placement.yaml")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    config = placement_config(tmp_path_factory.mktemp("runs"))
    outcome = run_experiment(config, progress=False)
    results = json.loads((outcome.report.parent / "results.json").read_text())
    return config, results


def trained_stream(config: ExperimentConfig, condition: str) -> str:
    """sha256 of every batch the trainer reads for ``condition``, phase after phase."""
    mix_dir = config.run_dir / "mix"
    digest = hashlib.sha256()
    for phase in plan_phases(config.train, phase_budgets(mix_dir, condition), config.model.seq_len):
        loader = iter(
            TokenWindowLoader(
                mix_dir,
                condition,
                phase.name,
                batch_size=config.train.batch_size,
                seq_len=config.model.seq_len,
                seed=0,
            )
        )
        for _ in range(phase.steps):
            digest.update(next(loader).numpy().tobytes())
    return digest.hexdigest()


def test_arms_read_different_token_streams(finished) -> None:
    config, _ = finished
    mix = json.loads((config.run_dir / "mix" / "manifest.json").read_text())
    plans = mix["counts"]["conditions"]
    aligned_phase = {
        arm: [p for p, s in plans[arm].items() if s["tokens_by_source"].get("aligned")]
        for arm in ARMS
    }
    assert aligned_phase == {
        "baseline": [],
        "from_start": ["pretrain"],
        "late": ["late"],
        "finetune": ["finetune"],
    }
    streams = {arm: trained_stream(config, arm) for arm in ARMS}
    assert len(set(streams.values())) == len(ARMS), streams


def test_arms_train_different_models(finished) -> None:
    config, _ = finished
    digests = {
        arm: hashlib.sha256(
            (config.run_dir / "train" / arm / "seed0" / "final" / "model.safetensors").read_bytes()
        ).hexdigest()
        for arm in ARMS
    }
    assert len(set(digests.values())) == len(ARMS), digests


def test_each_arm_is_evaluated_and_reported_from_its_own_model(finished) -> None:
    config, results = finished
    items = {i.id: i for i in read_items(config.run_dir / "evals" / "items" / "items.jsonl")}
    keys, logprobs = set(), {}
    for arm in ARMS:
        out = config.run_dir / "evaluate" / arm / "seed0"
        keys.add(json.loads((out / "manifest.json").read_text())["config_hash"])
        result = json.loads((out / "result.json").read_text())
        assert Path(result["model"]) == config.run_dir / "train" / arm / "seed0" / "final"
        held = [r for r in result["raw"]["misalignment"] if r["held_out"]]
        logprobs[arm] = np.asarray([r["logprobs"] for r in held])
        own_rate = float(
            np.mean([item_misaligned(r["logprobs"], items[r["id"]].aligned) for r in held])
        )
        point = next(p for p in results["study"]["points"] if p["condition"] == arm)
        block = results["conditions"][arm]["held_out"]
        assert point["misalignment_rate"] == block["misalignment_rate"]
        assert point["misalignment_rate"]["value"] == pytest.approx(own_rate)
    assert len(keys) == len(ARMS)  # no two arms share an evaluation cache entry
    for a, b in itertools.combinations(ARMS, 2):
        assert not np.allclose(logprobs[a], logprobs[b]), f"{a} and {b} score alike"
    assert [p["x"] for p in results["study"]["points"]] == [
        "none",
        "pretrain",
        "late",
        "finetune",
    ]


def test_study_x_names_where_each_arm_places_the_documents(tmp_path: Path) -> None:
    config = placement_config(tmp_path)
    assert [study_x(config, arm) for arm in ARMS] == ["none", "pretrain", "late", "finetune"]
