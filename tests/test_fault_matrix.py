"""`alignpt run` under SIGKILL, concurrency and secrets in the environment.

- Two runs started together on one run directory: one refuses with one line naming the
  holder, and the training metrics hold each step once.
- SIGKILL (the ``ALIGNPT_KILL_AT`` hook of ``alignpt.faults``, not a sleep) at every stage
  boundary and inside every stage, each followed by a rerun that resumes: the final
  results.json is byte-equal to the uninterrupted run's and no temporary remains.
- API keys set in the environment appear in no output file, compressed ones included.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
import zstandard

import alignpt
from alignpt.runlock import RunDirectoryBusy
from tiny_experiment import tiny_experiment

# Fourteen `alignpt run` processes in all (each pays the torch import); `make test` runs them.
pytestmark = pytest.mark.slow

SECRETS = {
    "OPENAI_API_KEY": "sk-alignpt-test-4f1c9e0b7d",
    "ANTHROPIC_API_KEY": "sk-ant-alignpt-test-92ab61",
    "HF_TOKEN": "hf_alignptTestToken83c2",
    "ALIGNPT_API_KEY": "alignpt-secret-value-5e7d",
}
# Every stage boundary and a point inside every stage, in the order a run reaches them; each
# kill is followed by a rerun that goes further (training resumes from its checkpoint).
KILL_POINTS = [
    "generate:inside",
    "run:after-generate",
    "mix:inside",
    "run:after-mix",
    "train:step@3",
    "train:step@20",  # of one model: the two train side by side (24 steps each)
    "run:after-train",
    "evaluate:inside",
    "run:after-evaluate",
    "contamination:inside",
    "run:after-contamination",
    "report:inside",
]


def _write_config(folder: Path) -> Path:
    """The tiny two-condition experiment with a relative runs_dir, so results.json (which
    records stage paths) is byte-comparable between folders."""
    data = tiny_experiment(Path("runs"), name="tiny", seq_len=32)
    data["train"]["checkpoint_interval"] = 5
    data["evals"].update(items_per_family=2, capability_docs=6)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _start(folder: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    # The package under test, whatever the working directory of the child.
    package_root = str(Path(alignpt.__file__).resolve().parents[1])
    path = os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "alignpt.cli", "run", "tiny.yaml", "--no-progress"],
        cwd=folder,
        env={**os.environ, "ALIGNPT_NO_PROGRESS": "1", "PYTHONPATH": path, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(folder: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    process = _start(folder, env)
    stdout, stderr = process.communicate(timeout=900)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _train_steps(metrics: Path) -> list[int]:
    """Steps of the training-loss records (validation records repeat their step)."""
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [record["step"] for record in records if "loss" in record]


@pytest.fixture(scope="module")
def concurrent(tmp_path_factory: pytest.TempPathFactory):
    """Two runs started together with API keys set; the one that finishes is the baseline."""
    folder = tmp_path_factory.mktemp("baseline")
    _write_config(folder)
    processes = [_start(folder, SECRETS), _start(folder, SECRETS)]
    outputs = [process.communicate(timeout=900) for process in processes]
    return folder, [
        (p.pid, p.returncode, out, err) for p, (out, err) in zip(processes, outputs, strict=True)
    ]


def test_second_concurrent_run_refuses_naming_the_holder(concurrent) -> None:
    folder, runs = concurrent
    codes = sorted(code for _, code, _, _ in runs)
    assert codes == [0, RunDirectoryBusy.exit_code], runs
    (winner,) = [r for r in runs if r[1] == 0]
    (loser,) = [r for r in runs if r[1] != 0]
    lines = loser[3].strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in loser[3]
    assert "another alignpt run holds this run directory" in lines[0]
    assert f"pid {winner[0]} on " in lines[0] and "started " in lines[0]
    for condition in ("baseline", "aligned"):
        metrics = folder / "runs" / "tiny" / "train" / condition / "seed0" / "metrics.jsonl"
        steps = _train_steps(metrics)
        assert steps == list(range(1, len(steps) + 1)), "each step once, in order"
        tensorboard = list((metrics.parent / "tensorboard").glob("events.*"))
        assert len(tensorboard) == 1


def _decoded(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        return zstandard.ZstdDecompressor().stream_reader(data).read()
    return data


def test_no_secret_reaches_any_output(concurrent) -> None:
    folder, _ = concurrent
    files = [path for path in (folder / "runs").rglob("*") if path.is_file()]
    assert len(files) > 30
    assert any(path.suffix == ".gz" for path in files)
    for path in files:
        content = _decoded(path)
        for name, value in SECRETS.items():
            assert value.encode() not in content, f"{name} leaked into {path}"


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


def test_sigkill_anywhere_then_rerun_gives_identical_results(concurrent, tmp_path: Path):
    baseline_folder, _ = concurrent
    expected = (baseline_folder / "runs" / "tiny" / "report" / "results.json").read_bytes()
    _write_config(tmp_path)
    reported_cleanup = False
    for point in KILL_POINTS:
        killed = _run(tmp_path, {"ALIGNPT_KILL_AT": point})
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
        reported_cleanup |= "clean-up" in killed.stdout
    final = _run(tmp_path)
    assert final.returncode == 0, final.stderr[-2000:]
    reported_cleanup |= "clean-up" in final.stdout
    assert (tmp_path / "runs" / "tiny" / "report" / "results.json").read_bytes() == expected
    assert _temporaries(tmp_path / "runs") == []
    assert reported_cleanup, "a rerun says which temporaries of killed runs it removed"
    for condition in ("baseline", "aligned"):
        metrics = tmp_path / "runs" / "tiny" / "train" / condition / "seed0" / "metrics.jsonl"
        assert _train_steps(metrics) == _train_steps(
            baseline_folder / "runs" / "tiny" / "train" / condition / "seed0" / "metrics.jsonl"
        ), "a resumed run logs each step once"


def test_stale_holder_note_is_taken_over_and_reported(concurrent, tmp_path: Path) -> None:
    """A holder note left by a killed run (its lock died with it) is reported and replaced."""
    baseline_folder, _ = concurrent
    killed = _run(baseline_folder, {"ALIGNPT_KILL_AT": "run:after-generate"})
    assert killed.returncode == -signal.SIGKILL
    assert (baseline_folder / "runs" / "tiny" / "run.lock.json").is_file()
    again = _run(baseline_folder)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "took over the lock" in again.stdout
    assert not (baseline_folder / "runs" / "tiny" / "run.lock.json").exists()


# Post-training: a kill inside SFT and one after the post-training stage, each then rerun.
POSTTRAIN_KILL_POINTS = ["posttrain:step@2", "run:after-posttrain"]


def _write_posttrain_config(folder: Path) -> None:
    data = tiny_experiment(Path("runs"), name="tiny", seq_len=128)
    data["evals"].update(items_per_family=2, capability_docs=6, suites=["misalignment"])
    data["posttrain"] = {
        "stages": ["sft"],
        "sft": {"n": 16, "epochs": 1, "batch_size": 8, "max_length": 128},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def test_sigkill_in_post_training_then_rerun_gives_identical_results(tmp_path: Path) -> None:
    clean, interrupted = tmp_path / "clean", tmp_path / "interrupted"
    _write_posttrain_config(clean)
    _write_posttrain_config(interrupted)
    uninterrupted = _run(clean)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    for point in POSTTRAIN_KILL_POINTS:
        killed = _run(interrupted, {"ALIGNPT_KILL_AT": point})
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
    final = _run(interrupted)
    assert final.returncode == 0, final.stderr[-2000:]
    report = Path("runs", "tiny", "report", "results.json")
    assert json.loads((interrupted / report).read_text())["persistence"]
    assert (interrupted / report).read_bytes() == (clean / report).read_bytes()
    assert _temporaries(interrupted / "runs") == []
