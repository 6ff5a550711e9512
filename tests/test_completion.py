"""The one stage-completion mechanism: finished outputs reused, others redone or refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignpt.completion import (
    cached_result,
    is_complete,
    prepare_output_dir,
    prepare_resumable_dir,
    record_matches,
)
from alignpt.errors import UserError


def test_cached_result_reuses_only_the_same_settings(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute() -> dict:
        calls.append(1)
        return {"value": len(calls)}

    out = tmp_path / "stage"
    assert cached_result(out, "s", {"a": 1}, compute) == ({"value": 1}, False)
    assert cached_result(out, "s", {"a": 1}, compute) == ({"value": 1}, True)
    assert cached_result(out, "s", {"a": 2}, compute) == ({"value": 2}, False)
    assert len(calls) == 2
    assert not list(tmp_path.glob(".*tmp*")), "no temporary directory is left behind"


def test_prepare_output_dir_skips_refuses_or_replaces(tmp_path: Path) -> None:
    out = tmp_path / "stage"
    cached_result(out, "s", {"a": 1}, dict)
    key = json.loads((out / "manifest.json").read_text())["config_hash"]
    assert is_complete(out, key)
    assert prepare_output_dir(out, key) is True
    with pytest.raises(UserError, match="already holds a different run"):
        prepare_output_dir(out, "other")
    assert prepare_output_dir(out, "other", force=True) is False
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "x").write_text("")
    with pytest.raises(UserError, match="holds no alignpt manifest"):
        prepare_output_dir(stray, key)


def test_record_matches_compares_named_fields_only(tmp_path: Path) -> None:
    record = tmp_path / "alignpt.json"
    assert not record_matches(record, {"seed": 0}, ["seed"])
    record.write_text(json.dumps({"seed": 0, "condition": "a", "steps": 9}))
    assert record_matches(record, {"seed": 0, "condition": "a", "steps": 1}, ["seed", "condition"])
    assert not record_matches(record, {"seed": 1, "condition": "a"}, ["seed", "condition"])


@pytest.mark.parametrize(
    ("finished", "resume", "force", "can_resume", "expected"),
    [
        (True, False, False, False, "reuse"),
        (True, True, True, False, "reuse"),  # ``alignpt run``: force keeps this config's model
        (True, False, True, False, "cleared"),  # ``alignpt train --force``: start over
        (False, True, False, False, "kept"),  # resume what is there
        (False, True, True, True, "kept"),  # force, but the checkpoint is this run's: resume
        (False, True, True, False, "cleared"),  # force, another run's checkpoint: start over
        (False, False, False, False, "refused"),
    ],
)
def test_prepare_resumable_dir_decisions(
    tmp_path: Path, finished: bool, resume: bool, force: bool, can_resume: bool, expected: str
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint").write_text("work")
    try:
        reuse = prepare_resumable_dir(
            out, finished=finished, resume=resume, force=force, can_resume=lambda: can_resume
        )
    except UserError as error:
        assert expected == "refused"
        assert "pass --resume to continue it or --force to start over" in str(error)
        return
    assert expected != "refused"
    assert reuse is (expected == "reuse")
    assert (out / "checkpoint").exists() is (expected != "cleared")
