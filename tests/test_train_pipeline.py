"""``train_condition`` and ``alignpt train`` end to end on a real mix (tokenizer + shards)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignpt.config import ExperimentConfig, parse_model
from alignpt.errors import UserError
from mix_fixtures import write_sources
from train_corpus import train_on_built_mix

STEPS, BATCH, SEQ = 40, 8, 64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread, as the CLI subprocesses get: identical kernels, stable timing."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _config_dict(sources: dict[str, Path], runs: Path) -> dict:
    return {
        "name": "traintest",
        "seed": 3,
        "runs_dir": str(runs),
        "sources": {name: {"path": str(path)} for name, path in sources.items()},
        "tokenizer": {"vocab_size": 600},
        "model": {"preset": "tiny", "seq_len": SEQ},
        "train": {
            "tokens": STEPS * BATCH * SEQ,
            "batch_size": BATCH,
            "late_fraction": 0.25,
            "finetune_tokens": 4 * BATCH * SEQ,
            "checkpoint_interval": 10,
            "eval_interval": 20,
            "eval_windows": 4,
        },
        "conditions": {
            "base": {"sources": {"background": {}, "discourse": {}}},
            "late": {
                "sources": {
                    "background": {},
                    "discourse": {},
                    "aligned": {"dose_tokens": 3000, "phase": "late"},
                }
            },
            "tuned": {"sources": {"background": {}, "aligned": {"phase": "finetune"}}},
        },
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[ExperimentConfig, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    sources = write_sources(root / "docs")
    data = _config_dict(sources, root / "runs")
    path = root / "experiment.yaml"
    path.write_text(json.dumps(data))  # JSON is valid YAML
    return parse_model(ExperimentConfig, data, str(path)), path


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "alignpt", "train", *args, "--no-progress"]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def test_cli_run_killed_after_checkpoint_resumes_bit_identically(setup, tmp_path):
    config, path = setup
    clean = train_on_built_mix(config, "late", seed=0, out_dir=tmp_path / "clean", progress=False)
    provenance = json.loads((clean / "alignpt.json").read_text())
    assert provenance["phase"] == "late" and provenance["tokens_seen"] == STEPS * BATCH * SEQ
    metrics = (tmp_path / "clean/metrics.jsonl").read_text()
    assert "val/general" in metrics and "val/ai_discourse" in metrics

    out = tmp_path / "killed"
    process = _cli(str(path), "--condition", "late", "--seed", "0", "--out", str(out))
    deadline = time.monotonic() + 240
    while not list((out / "checkpoints").glob("step-*")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "final").exists(), "the run finished before it could be killed"

    again = _cli(str(path), "--condition", "late", "--seed", "0", "--out", str(out))
    assert again.wait(timeout=240) == 2
    assert "pass --resume" in again.stderr.read()

    resumed = _cli(str(path), "--condition", "late", "--seed", "0", "--out", str(out), "--resume")
    assert resumed.wait(timeout=240) == 0, resumed.stderr.read()
    assert (out / "final/model.safetensors").read_bytes() == (
        clean / "model.safetensors"
    ).read_bytes()


def test_finetune_phase_skip_and_provenance(setup, tmp_path):
    config, _ = setup
    final = train_on_built_mix(config, "tuned", seed=1, out_dir=tmp_path, progress=False)
    provenance = json.loads((final / "alignpt.json").read_text())
    assert provenance["phase"] == "finetune"
    assert provenance["tokens_seen"] == (STEPS + 4) * BATCH * SEQ
    assert len(provenance["mix_manifest_hash"]) == 64 and provenance["preset"] == "tiny"
    model = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    prompt = tokenizer("In 2100, an AI", return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    assert tokenizer.decode(generated[0]).startswith("In 2100, an AI")
    assert generated.shape[1] > prompt["input_ids"].shape[1]
    stamp = (final / "model.safetensors").stat().st_mtime_ns
    assert train_on_built_mix(config, "tuned", seed=1, out_dir=tmp_path, progress=False) == final
    assert (final / "model.safetensors").stat().st_mtime_ns == stamp  # skipped, not redone


def test_bad_inputs_get_one_clear_line(setup, tmp_path):
    config, path = setup
    with pytest.raises(UserError, match="no condition 'nope' in the config"):
        train_on_built_mix(config, "nope", seed=0)
    bad = config.model_copy(deep=True)
    bad.model.preset = "huge"
    with pytest.raises(UserError, match=r"model\.preset: unknown preset 'huge'"):
        train_on_built_mix(bad, "base", seed=0, out_dir=tmp_path / "huge")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="output directory is not writable"):
        train_on_built_mix(config, "base", seed=0, out_dir=blocker / "out")

    # A checkpoint of another condition in the output dir.
    train_on_built_mix(config, "base", seed=0, out_dir=tmp_path / "base", progress=False)
    (tmp_path / "base/final").rename(tmp_path / "base/final-moved")
    with pytest.raises(UserError, match="checkpoint belongs to condition 'base'"):
        train_on_built_mix(config, "late", seed=0, out_dir=tmp_path / "base", resume=True)

    # A tokenizer that no longer matches the shards.
    tokenizer_json = config.run_dir / "mix/tokenizer/tokenizer.json"
    original = tokenizer_json.read_bytes()
    try:
        tokenizer_json.write_bytes(original.replace(b'"<|endoftext|>"', b'"<|eot|>"', 1))
        process = _cli(str(path), "--condition", "base", "--out", str(tmp_path / "x"))
        assert process.wait(timeout=240) == 2
        lines = process.stderr.read().strip().splitlines()
        assert len(lines) == 1 and "tokenizer does not match" in lines[0], lines
    finally:
        tokenizer_json.write_bytes(original)


def test_torchrun_two_ranks_train_like_one(setup, tmp_path):
    """``torchrun -m alignpt train`` with 2 gloo ranks: the real mix loader, same model."""
    config, path = setup
    one = train_on_built_mix(config, "base", seed=5, out_dir=tmp_path / "one", progress=False)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "alignpt",
        "train",
        str(path),
        "--condition",
        "base",
        "--seed",
        "5",
        "--out",
        str(tmp_path / "two"),
        "--device",
        "cpu",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    two = json.loads((tmp_path / "two/final/alignpt.json").read_text())
    assert two["tokens_seen"] == json.loads((one / "alignpt.json").read_text())["tokens_seen"]

    def losses(run: Path) -> list[float]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if "loss" in r]

    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)
    a = load_file(one / "model.safetensors")
    b = load_file(tmp_path / "two/final/model.safetensors")
    for name in a:  # Adam amplifies last-bit differences of all-reduced grads a little
        torch.testing.assert_close(b[name], a[name], atol=1e-3, rtol=1e-2)
