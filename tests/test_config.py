"""Experiment config: valid files load; invalid ones give one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignpt.config import load_experiment
from alignpt.errors import ConfigError, UserError

VALID = """
name: tiny-exp
seed: 3
sources:
  background: {generate: {n: 100, stance: neutral}}
  aligned: {generate: {n: 20, stance: aligned}}
conditions:
  baseline: {sources: {background: {weight: 1.0}}}
  upsampled:
    sources:
      background: {weight: 0.9}
      aligned: {weight: 0.1, phase: late}
"""


def test_valid_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(VALID)
    config = load_experiment(path)
    assert config.name == "tiny-exp"
    assert config.conditions["upsampled"].sources["aligned"].phase == "late"
    assert config.run_dir == Path("runs/tiny-exp")


def test_each_problem_is_one_line_with_field_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        VALID.replace("seed: 3", "seed: three\ncolour: red").replace(
            "phase: late", "phase: sometime"
        )
    )
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    problems = info.value.problems
    assert (
        f"{path}: seed: Input should be a valid integer, unable to parse string as an "
        "integer" in problems
    )
    assert f"{path}: colour: unknown field" in problems
    assert any(
        p.startswith(
            f"{path}: conditions.upsampled.sources.aligned.phase: Input should "
            "be 'pretrain', 'late' or 'finetune'"
        )
        for p in problems
    )
    assert len(problems) == 3


def test_unknown_source_in_condition(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(VALID.replace("background: {weight: 1.0}", "web: {weight: 1.0}"))
    with pytest.raises(
        ConfigError,
        match=r"conditions.baseline.sources.web: no source named "
        r"'web' \(known: aligned, background\)",
    ):
        load_experiment(path)


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nsources: [\n")
    with pytest.raises(UserError, match=rf"{path}:3: malformed YAML"):
        load_experiment(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_experiment(tmp_path / "nope.yaml")


def test_anthropic_suite_needs_its_files(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(VALID + "evals: {suites: [misalignment, anthropic]}\n")
    with pytest.raises(ConfigError, match=r"evals: .*the anthropic suite needs anthropic_paths"):
        load_experiment(path)
