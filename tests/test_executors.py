"""The executor block maps onto datatrove's executors and fails early where one cannot run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from datatrove.data import Document
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from alignpt.errors import UserError
from alignpt.executors import ExecutorConfig, SlurmOptions, build_executor, check_executor


def test_local_executor_runs_tasks_and_skips_completed(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for shard in range(4):
        rows = [Document(text=f"doc {shard}-{i}", id=f"{shard}-{i}") for i in range(3)]
        writer = JsonlWriter(str(source), output_filename=f"part{shard}.jsonl", compression=None)
        with writer:
            for row in rows:
                writer.write(row)
    config = ExecutorConfig(kind="local", tasks=2, workers=1)
    pipeline = [
        JsonlReader(str(source)),
        JsonlWriter(str(tmp_path / "out"), output_filename="${rank}.jsonl", compression=None),
    ]
    build_executor(config, pipeline, tmp_path / "logs").run()
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outputs == ["00000.jsonl", "00001.jsonl"]
    lines = sum(len(p.read_text().splitlines()) for p in (tmp_path / "out").iterdir())
    assert lines == 12
    assert sorted(p.name for p in (tmp_path / "logs" / "completions").iterdir()) == [
        "00000",
        "00001",
    ]
    # A second run finds both completion markers and rewrites nothing.
    (tmp_path / "out" / "00000.jsonl").write_text("kept\n")
    build_executor(config, pipeline, tmp_path / "logs").run()
    assert (tmp_path / "out" / "00000.jsonl").read_text() == "kept\n"


def test_slurm_without_sbatch_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    config = ExecutorConfig(kind="slurm", tasks=8, slurm=SlurmOptions(partition="cpu"))
    with pytest.raises(UserError, match=r"^curate\.executor\.kind: 'slurm' needs the sbatch"):
        check_executor(config, "curate.executor")


def test_slurm_needs_its_block() -> None:
    with pytest.raises(UserError, match=r"executor\.slurm: kind 'slurm' needs a slurm block"):
        check_executor(ExecutorConfig(kind="slurm"))
