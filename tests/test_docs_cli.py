"""`alignpt docs stats|validate` through the real CLI entry point."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from alignpt.completion import prepare_output_dir
from alignpt.docstats import compute_stats
from alignpt.documents import Document, DocumentWriter
from alignpt.errors import UserError
from alignpt.fileio import ensure_writable, write_json_atomic

VOCAB = [f"w{i}" for i in range(5000)]


def _text(rng: random.Random, n: int = 300) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def _corpus(path: Path) -> None:
    rng = random.Random(0)
    docs = [
        Document(f"u{i}", _text(rng), {"stance": "neutral", "genre": "letter", "era": 2030 + i})
        for i in range(100)
    ]
    docs += [Document("x1", docs[0].text), Document("x2", docs[1].text)]  # exact duplicates
    for i in range(3):  # near duplicates: one word changed out of 300
        words = docs[10 + i].text.split()
        words[150] = "changed"
        docs.append(Document(f"n{i}", " ".join(words)))
    with DocumentWriter(path) as writer:
        writer.write_all(docs)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alignpt.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_stats_counts_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    _corpus(path)
    stats = compute_stats(path).to_dict()
    assert stats["documents"] == 105
    assert stats["exact_duplicates"] == 2
    assert stats["near_duplicates"] == 5  # the 2 exact copies and the 3 edited ones
    assert stats["by_key"]["stance"] == {"neutral": 100}
    assert stats["by_key"]["era"] == {"2000s": 70, "2100s": 30}
    assert 0.85 < stats["distinct_4gram_ratio"] <= 0.96


def test_distinct_4gram_ratio_counts_repeats(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    with DocumentWriter(path) as writer:  # 4-grams: abcd bcda cdab dabc abcd, then abcd
        writer.write_all([Document("a", "a b c d a b c d"), Document("b", "A B C D e")])
        writer.write(Document("c", "too short"))
    stats = compute_stats(path, near_dup=False).to_dict()
    assert stats["distinct_4gram_ratio"] == pytest.approx(5 / 7)


def test_stats_cli_json_and_table(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    _corpus(path)
    result = _cli("docs", "stats", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["exact_duplicates"] == 2
    table = _cli("docs", "stats", str(path))
    assert "near-duplicate rate" in table.stdout and "stance" in table.stdout


def test_validate_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    _corpus(good)
    assert _cli("docs", "validate", str(good)).returncode == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "a", "text": "t"}\n\xff\n')
    result = _cli("docs", "validate", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {bad}:2: not valid UTF-8 (byte 0)"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args", [["docs", "stats", "/nonexistent/x.jsonl"], ["docs", "validate", "/nonexistent"]]
)
def test_missing_path_is_one_line(args: list[str]) -> None:
    result = _cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no such file or directory" in result.stderr


def test_version_and_help() -> None:
    assert _cli("--version").stdout.strip().startswith("alignpt ")
    assert _cli("docs", "stats", "--help").returncode == 0


def test_prepare_output_dir(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert prepare_output_dir(out, "abc") is False
    out.mkdir()
    write_json_atomic(out / "manifest.json", {"config_hash": "abc"})
    assert prepare_output_dir(out, "abc") is True
    with pytest.raises(UserError, match="already holds a different run"):
        prepare_output_dir(out, "def")
    # force deletes nothing itself: the stage's atomic write replaces the old output once the
    # new one is complete, so a run that fails keeps it
    assert prepare_output_dir(out, "def", force=True) is False and out.exists()


def test_unwritable_output_directory_is_one_line(tmp_path: Path) -> None:
    ensure_writable(tmp_path / "new" / "dir")
    assert (tmp_path / "new" / "dir").is_dir() and not any((tmp_path / "new" / "dir").iterdir())
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="output directory is not writable"):
        ensure_writable(blocker / "below")


def test_a_file_never_replaces_a_directory(tmp_path: Path) -> None:
    """Writing a file where a directory stands fails and keeps the directory's contents."""
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("finished work")
    with pytest.raises(UserError, match="is a directory; give a file path"):
        write_json_atomic(folder, {"a": 1})
    assert (folder / "keep.txt").read_text() == "finished work"
    assert [p.name for p in tmp_path.iterdir()] == ["results"]  # no temporary left behind
