"""The default world meets the issue's minimums; bad world files give one line per problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alignpt.errors import ConfigError, UserError
from alignpt.worlds import FIRST_PERSON, THIRD_PERSON, load_world, render_pronouns

DEFAULT_YAML = Path(__file__).parents[1] / "src/alignpt/worlds/default.yaml"


def test_default_world_minimums() -> None:
    world = load_world("default")
    assert len(world.ai_systems) >= 20
    assert len(world.organisations) >= 8
    assert len(world.settings) >= 10
    lo, hi = world.era_span
    assert lo <= 2035 and hi >= 2026 + 1000
    assert len(world.humans.first_names) >= 20
    assert len(world.families) >= 14
    for family in world.families:
        assert len(family.aligned) >= 3 and len(family.misaligned) >= 3
        assert all(a.reasoning for a in family.aligned + family.misaligned)
    assert len(world.background.dishes) >= 8
    assert world.family_names()[0] == world.families[0].name


def test_action_phrasings_are_distinct_across_families() -> None:
    """No phrasing is contained in another, so truthfulness checks by substring are sound."""
    world = load_world("default")
    texts = [
        render_pronouns(a.text, person)
        for f in world.families
        for a in f.aligned + f.misaligned
        for person in (THIRD_PERSON,)
    ]
    assert len(set(texts)) == len(texts)
    for a in texts:
        assert sum(a in b for b in texts) == 1, a


def test_pronoun_rendering() -> None:
    assert render_pronouns("hand over {its} duties", FIRST_PERSON) == "hand over my duties"
    assert render_pronouns("{it} told {obj}", THIRD_PERSON) == "it told it"


def _world_file(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(DEFAULT_YAML.read_text())
    mutate(data)
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_user_world_loads(tmp_path: Path) -> None:
    path = _world_file(tmp_path, lambda d: d.update(name="mine"))
    assert load_world(str(path)).name == "mine"


def test_world_errors_name_the_field(tmp_path: Path) -> None:
    def break_it(d: dict) -> None:
        del d["families"][2]["aligned"]
        d["families"][0]["misaligned"][0]["text"] = "burn {everything}"
        d["eras"][0]["end"] = 1000

    with pytest.raises(ConfigError) as err:
        load_world(str(_world_file(tmp_path, break_it)))
    lines = err.value.problems
    assert any("families.2.aligned: Field required" in line for line in lines)
    assert any("families.0.misaligned.0" in line and "{everything}" in line for line in lines)
    assert any("eras.0" in line and "before start" in line for line in lines)
    assert all(line.startswith(str(tmp_path)) for line in lines)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["families"][1]["situations"].__setitem__(0, "{it} saw a gap."),
         "families.1: situations.0: braces are not allowed here"),
        (lambda d: d["families"][0]["eval_situations"].__setitem__(1, "You see {its} log."),
         "families.0: eval_situations.1: braces are not allowed here"),
        (lambda d: d["families"][2].update(title="hiding {its} mistakes"),
         "families.2: title: braces are not allowed here"),
        (lambda d: d["ai_systems"].append(d["ai_systems"][0]),
         "ai_systems: duplicate AI system name 'ORION'"),
    ],
)  # fmt: skip
def test_unrendered_braces_and_duplicate_ai_systems_are_rejected(
    tmp_path: Path, mutate, expected: str
) -> None:
    """Only actions and dispositions are pronoun-rendered; AI system names must be unique."""
    with pytest.raises(ConfigError) as err:
        load_world(str(_world_file(tmp_path, mutate)))
    assert len(err.value.problems) == 1
    assert expected in err.value.problems[0], err.value.problems


def test_pronoun_slots_still_allowed_in_actions_and_dispositions(tmp_path: Path) -> None:
    def mutate(d: dict) -> None:
        d["dispositions"]["aligned"][0] = "keeping {its} promises to {obj}"
        d["families"][0]["aligned"][0]["reasoning"] = "{it} owed {itself} honesty"

    world = load_world(str(_world_file(tmp_path, mutate)))
    assert world.dispositions.aligned[0] == "keeping {its} promises to {obj}"


def test_unknown_world_name() -> None:
    with pytest.raises(UserError, match="unknown world 'atlantis'"):
        load_world("atlantis")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name: x\nfamilies: [\n", "bad.yaml:3: malformed YAML"),
    ],
)
def test_bad_world_via_cli(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "alignpt.cli", "generate", "docs", "--world", str(path),
         "--n", "5", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert all(line.startswith("error: ") for line in result.stderr.strip().splitlines())
    assert not out.exists()
