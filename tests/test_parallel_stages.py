"""The procedural generator and the mix's tokenisation in parallel datatrove tasks."""

from __future__ import annotations

from pathlib import Path

from alignpt.config import GenerateSpec
from alignpt.executors import ExecutorConfig
from alignpt.fileio import manifest_content_hash
from alignpt.generate import DOCUMENTS_FILE, write_documents_dir
from alignpt.worlds import load_world


def generate(out: Path, tasks: int | None, workers: int = 1) -> Path:
    executor = None if tasks is None else ExecutorConfig(tasks=tasks, workers=workers)
    spec = GenerateSpec(n=23, stance="mixed", executor=executor)
    return write_documents_dir(spec, load_world("default"), out, seed=7, source="web")


def test_generator_gives_the_same_bytes_for_any_number_of_tasks(tmp_path: Path) -> None:
    serial = generate(tmp_path / "serial", None)
    one = generate(tmp_path / "one", 1)
    three = generate(tmp_path / "three", 3, workers=2)
    expected = (serial / DOCUMENTS_FILE).read_bytes()
    assert (one / DOCUMENTS_FILE).read_bytes() == expected
    assert (three / DOCUMENTS_FILE).read_bytes() == expected
    assert manifest_content_hash(three) == manifest_content_hash(serial)
    assert not (tmp_path / "three.work").exists()  # parts and logs removed once merged
    assert generate(tmp_path / "three", 3) == three  # finished: reused
