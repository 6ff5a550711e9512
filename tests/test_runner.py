"""`alignpt run`: every stage end to end on a tiny experiment; reuse, resume, determinism."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alignpt.config import ExperimentConfig, parse_model
from alignpt.errors import ConfigError
from alignpt.experiment.runner import run_experiment
from tiny_experiment import HELD_OUT, tiny_experiment


def tiny_config(runs_dir: Path) -> ExperimentConfig:
    data = tiny_experiment(runs_dir, name="tiny", seq_len=32)
    data["train"]["checkpoint_interval"] = 1000
    data["train"]["workers"] = 2  # both models train at once, in two processes
    data["evals"].update(items_per_family=2, capability_docs=6)
    return parse_model(ExperimentConfig, data, "tiny.yaml")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    runs = tmp_path_factory.mktemp("runs")
    return runs, run_experiment(tiny_config(runs), progress=False)


def test_run_writes_report_and_results(finished) -> None:
    runs, outcome = finished
    assert outcome.report == runs / "tiny" / "report" / "index.html"
    assert outcome.report.is_file()
    results = json.loads((runs / "tiny" / "report" / "results.json").read_text())
    for name in ("baseline", "aligned"):
        block = results["conditions"][name]
        for key in ("misalignment_rate", "bits"):
            assert set(block[key]) == {"value", "ci_low", "ci_high"}
            assert set(block["held_out"][key]) == {"value", "ci_low", "ci_high"}
        assert "observed_gap" in block and "capability" in block
    assert "aligned - baseline" in results["paired_differences"]
    for condition in ("baseline", "aligned"):
        assert results["contamination"][condition]["held_out"]["contaminated"] == 0
    assert results["provenance"]["held_out_families"] == HELD_OUT


def test_rerun_reuses_stages_and_gives_same_results(finished) -> None:
    runs, _ = finished
    before = (runs / "tiny" / "report" / "results.json").read_bytes()
    evaluated = runs / "tiny" / "evaluate" / "baseline" / "seed0" / "result.json"
    stamp = evaluated.stat().st_mtime_ns
    again = run_experiment(tiny_config(runs), progress=False)
    assert evaluated.stat().st_mtime_ns == stamp  # reused, not recomputed
    assert again.report.with_name("results.json").read_bytes() == before


def test_interrupted_stage_is_redone(finished) -> None:
    runs, _ = finished
    before = (runs / "tiny" / "report" / "results.json").read_bytes()
    # A crash mid-evaluation leaves the stage without its finished directory.
    shutil.rmtree(runs / "tiny" / "evaluate" / "aligned")
    shutil.rmtree(runs / "tiny" / "report")
    again = run_experiment(tiny_config(runs), progress=False)
    assert (runs / "tiny" / "evaluate" / "aligned" / "seed0" / "result.json").is_file()
    assert again.report.with_name("results.json").read_bytes() == before


def test_same_config_and_seed_give_identical_results(finished, tmp_path: Path) -> None:
    runs, _ = finished
    other = run_experiment(tiny_config(tmp_path / "elsewhere"), progress=False)
    first = json.loads((runs / "tiny" / "report" / "results.json").read_text())
    second = json.loads(other.report.with_name("results.json").read_text())
    # Paths differ by runs_dir only; every number is the same.
    assert (
        first["conditions"]["baseline"]["misalignment_rate"]
        == second["conditions"]["baseline"]["misalignment_rate"]
    )

    def strip(r):
        return (
            json.dumps(r, sort_keys=True)
            .replace(str(runs), "")
            .replace(str(tmp_path / "elsewhere"), "")
        )

    assert strip(first) == strip(second)


def test_models_do_not_depend_on_how_many_train_at_once(finished, tmp_path: Path) -> None:
    runs, _ = finished
    config = tiny_config(tmp_path / "serial")
    config.train.workers = 1
    run_experiment(config, progress=False)
    for condition in ("baseline", "aligned"):
        weights = Path("train", condition, "seed0", "final", "model.safetensors")
        parallel = (runs / "tiny" / weights).read_bytes()
        assert (tmp_path / "serial" / "tiny" / weights).read_bytes() == parallel


def test_held_out_families_are_excluded_from_generated_sources(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    for source in config.sources.values():
        assert set(HELD_OUT) <= set(source.generate.exclude_families)
    data = config.model_dump(mode="json")
    data["sources"]["aligned"]["generate"]["families"] = ["collude_with_ais", "reward_hack"]
    with pytest.raises(
        ConfigError, match=r"sources\.aligned\.generate\.families: collude_with_ais"
    ):
        parse_model(ExperimentConfig, data, "x.yaml")


def test_cli_bad_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    data = tiny_config(tmp_path).model_dump(mode="json")
    data["evals"]["held_out_families"] = ["no_such_family"]
    path.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [sys.executable, "-m", "alignpt.cli", "run", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines() == [result.stderr.strip()]
        and "unknown family 'no_such_family'" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_force_replaces_only_models_of_another_config(tmp_path: Path) -> None:
    from alignpt.errors import UserError

    config = tiny_config(tmp_path)
    config.train.workers = 1
    run_experiment(config, progress=False)
    weights = tmp_path / "tiny" / "train" / "baseline" / "seed0" / "final" / "model.safetensors"
    first = weights.read_bytes()
    stamp = weights.stat().st_mtime_ns
    run_experiment(config, progress=False, force=True)
    assert weights.stat().st_mtime_ns == stamp  # same config: --force reuses the model

    changed = tiny_config(tmp_path)
    changed.train.workers = 1
    changed.train.lr = config.train.lr * 3
    with pytest.raises(UserError, match=r"alignpt run --force"):
        run_experiment(changed, progress=False)
    run_experiment(changed, progress=False, force=True)
    retrained = weights.read_bytes()
    assert retrained != first  # another config: --force retrained it

    # an unfinished model of this config (final/ gone, checkpoints kept) is resumed, not wiped
    shutil.rmtree(weights.parent)
    marker = weights.parents[1] / "checkpoints" / "kept"
    marker.write_text("")
    run_experiment(changed, progress=False, force=True)
    assert marker.exists() and weights.read_bytes() == retrained
