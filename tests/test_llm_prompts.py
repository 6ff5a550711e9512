"""Prompt templates overridden by a world (inline or a directory) and by the run's config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alignpt.config import GenerateSpec
from alignpt.errors import UserError
from alignpt.generate.llm.jobs import JobFactory
from alignpt.worlds import WORLDS_DIR, load_world

REPO = Path(__file__).resolve().parent.parent


def world_file(tmp_path: Path, prompts: dict, name: str = "prompted") -> Path:
    data = yaml.safe_load((WORLDS_DIR / "default.yaml").read_text())
    data.update(name=name, prompts=prompts)
    path = tmp_path / "worlds" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def factory(world_path: Path, **llm: object) -> JobFactory:
    block = {"base_url": "http://127.0.0.1:9/v1", "model": "m", **llm}
    spec = GenerateSpec(n=12, stance="mixed", genres=["news_report", "diary"], llm=block)
    return JobFactory(spec, load_world(str(world_path)), seed=0, source="docs")


def prompt(jobs: JobFactory, genre: str) -> tuple[str, str, str]:
    job = next(jobs.job(i) for i in range(jobs.n) if jobs.job(i).spec.genre == genre)
    return job.draft_body()["messages"][0]["content"], job.template.origin, job.template.sha256


def test_world_inline_template_and_directory_override_the_package(tmp_path):
    packaged = factory(WORLDS_DIR / "default.yaml")
    (tmp_path / "worlds" / "prompts").mkdir(parents=True)
    (tmp_path / "worlds" / "prompts" / "_rules.txt").write_text("RULES FROM THE WORLD DIR\n")
    inline = {"news_report": "WORLD NEWS about {{ ai_name }}.\n{% include '_rules.txt' %}"}
    path = world_file(tmp_path, {"dir": "prompts", "templates": inline})
    jobs = factory(path)
    news, origin, sha = prompt(jobs, "news_report")
    assert news.startswith("WORLD NEWS about ") and "RULES FROM THE WORLD DIR" in news
    assert origin == "world 'prompted' prompts.templates.news_report"
    assert sha != prompt(packaged, "news_report")[2]
    diary, origin, _ = prompt(jobs, "diary")  # packaged diary, the world's shared rules
    assert "RULES FROM THE WORLD DIR" in diary and origin == "package"


def test_config_prompts_dir_wins_over_the_world(tmp_path):
    path = world_file(tmp_path, {"templates": {"news_report": "WORLD NEWS\n"}})
    run_dir = tmp_path / "run-prompts"
    run_dir.mkdir()
    (run_dir / "news_report.txt").write_text("RUN NEWS\n")
    news, origin, _ = prompt(factory(path, prompts_dir=str(run_dir)), "news_report")
    assert news == "RUN NEWS\n" and origin.startswith("llm.prompts_dir")


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ({"templates": {"no_such_genre": "x"}}, "unknown template 'no_such_genre'"),
        ({"templates": {"news_report": "{% if %}"}}, "prompts.templates.news_report) line 1"),
        ({"templates": {"news_report": "{{ no_such_field }}"}}, "'no_such_field' is undefined"),
    ],
)
def test_bad_world_templates_are_one_clear_error(tmp_path, prompts, message):
    path = world_file(tmp_path, prompts)
    with pytest.raises(UserError) as caught:
        jobs = factory(path)
        prompt(jobs, "news_report")
    assert message in str(caught.value) and "world 'prompted'" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_world_prompts_dir_names_the_world_file(tmp_path):
    path = world_file(tmp_path, {"dir": "missing"})
    with pytest.raises(UserError, match=r"prompted\.yaml: prompts\.dir: .*missing is not a dir"):
        load_world(str(path))


def test_cli_reports_a_bad_world_template_in_one_line(tmp_path):
    path = world_file(tmp_path, {"templates": {"_scenario": "{{ broken"}})  # in every genre
    args = ["generate", "docs", "--backend", "llm", "--world", str(path), "--n", "4"]
    args += ["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--out", str(tmp_path / "o")]
    env = os.environ | {"PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "alignpt.cli", *args], env=env, capture_output=True, text=True
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "(world 'prompted' prompts.templates._scenario) line 1" in lines[-1]


def test_brainstorm_replies_are_parsed_into_ideas():
    from alignpt.generate.llm.jobs import parse_ideas

    reply = "Ideas:\n1. A harbour log.\n2) An inquiry\n- a third idea\n\n(4) fourth one\n* ok\n7."
    assert parse_ideas(reply) == [
        "Ideas:", "A harbour log.", "An inquiry", "a third idea", "fourth one",
    ]  # fmt: skip
    assert parse_ideas("  \n-\n") == []
