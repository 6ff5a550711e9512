"""``fileio.atomic_path``: a directory is never missing under both names, even after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from alignpt.fileio import atomic_path, clean_temporaries

REPLACE = """
import sys
from pathlib import Path
from alignpt.fileio import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.mkdir()
    (tmp / "data.txt").write_text("new")
"""


def _replace_killed_at(dest: Path, point: str) -> None:
    env = {**os.environ, "ALIGNPT_KILL_AT": point}
    done = subprocess.run([sys.executable, "-c", REPLACE, str(dest)], env=env, timeout=60)
    assert done.returncode == -signal.SIGKILL


def _listing(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


@pytest.mark.parametrize(
    ("point", "expected"),
    [("atomic:written", "old"), ("atomic:aside", "old"), ("atomic:replaced", "new")],
)
def test_kill_during_replacement_keeps_old_or_new(tmp_path: Path, point: str, expected: str):
    dest = tmp_path / "stage"
    dest.mkdir()
    (dest / "data.txt").write_text("old")
    _replace_killed_at(dest, point)
    if point == "atomic:aside":  # the window: only the aside copy holds the finished work
        assert not dest.exists()
        assert any(name.startswith(".stage.old-") for name in _listing(tmp_path))
    actions = clean_temporaries(tmp_path)
    assert actions, "the rerun says what it cleaned"
    assert _listing(tmp_path) == ["stage"]
    assert (dest / "data.txt").read_text() == expected


def test_next_writer_recovers_an_aside_copy(tmp_path: Path) -> None:
    dest = tmp_path / "stage"
    dest.mkdir()
    (dest / "data.txt").write_text("old")
    _replace_killed_at(dest, "atomic:aside")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.mkdir()
        raise RuntimeError("this attempt fails too")
    assert (dest / "data.txt").read_text() == "old"
    assert [n for n in _listing(tmp_path) if n.startswith(".stage.old-")] == []


def test_temporaries_of_live_processes_are_kept(tmp_path: Path) -> None:
    mine = tmp_path / f".stage.tmp-{os.getpid()}-1"
    mine.mkdir()
    dead = tmp_path / ".stage.tmp-999999999-1"
    dead.mkdir()
    assert clean_temporaries(tmp_path) == [f"removed {dead}"]
    assert mine.is_dir() and not dead.exists()


def test_file_replacement_is_one_rename(tmp_path: Path) -> None:
    dest = tmp_path / "f.txt"
    dest.write_text("old")
    with atomic_path(dest) as tmp:
        tmp.write_text("new")
    assert dest.read_text() == "new"
    assert _listing(tmp_path) == ["f.txt"]
