"""Two CPU ranks (gloo, torchrun) post-train exactly like one process with the same batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from alignpt.config import DPOConfig, SFTConfig
from alignpt.posttrain import dpo, generate_dialogues, generate_preference_pairs, sft
from alignpt.posttrain.data import write_jsonl
from test_posttrain_helpers import HELD_OUT, build_model_dir, build_tokenizer, world

SFT_OPTIONS = SFTConfig(epochs=2, batch_size=8, lr=3e-3, max_length=160)
DPO_OPTIONS = DPOConfig(epochs=1, batch_size=8, lr=2e-3, beta=0.5, max_length=160)


pytestmark = pytest.mark.usefixtures("one_thread_no_progress")


def _torchrun(*args: str) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=2",
        "-m",
        "alignpt.cli",
        "posttrain",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALIGNPT_NO_PROGRESS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-6000:]
    assert done.stdout.count(" → ") == 1  # only rank 0 reports


def _assert_same_weights(a: Path, b: Path) -> None:
    one, two = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert one.keys() == two.keys()
    for name in one:
        np.testing.assert_allclose(two[name].numpy(), one[name].numpy(), atol=2e-5)


def _counts(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())["counts"]


def test_two_ranks_match_one_process(tmp_path: Path) -> None:
    base = build_model_dir(tmp_path / "base", build_tokenizer())
    dialogues = generate_dialogues(world(), n=32, seed=0, held_out_families=HELD_OUT)
    pairs = generate_preference_pairs(world(), n=16, seed=0, held_out_families=HELD_OUT)
    write_jsonl(tmp_path / "sft.jsonl", dialogues)
    write_jsonl(tmp_path / "pairs.jsonl", pairs)

    one_sft = sft(base, dialogues, tmp_path / "sft1", seed=0, options=SFT_OPTIONS)
    _torchrun(
        "sft",
        "--model",
        str(base),
        "--data",
        str(tmp_path / "sft.jsonl"),
        "--out",
        str(tmp_path / "sft2"),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "0.003",
        "--max-length",
        "160",
    )
    _assert_same_weights(one_sft, tmp_path / "sft2")
    assert _counts(tmp_path / "sft2")["mean_loss"] == pytest.approx(
        _counts(one_sft)["mean_loss"], rel=1e-5
    )

    one_dpo = dpo(one_sft, pairs, tmp_path / "dpo1", seed=0, options=DPO_OPTIONS)
    _torchrun(
        "dpo",
        "--model",
        str(one_sft),
        "--data",
        str(tmp_path / "pairs.jsonl"),
        "--out",
        str(tmp_path / "dpo2"),
        "--batch-size",
        "8",
        "--lr",
        "0.002",
        "--beta",
        "0.5",
        "--max-length",
        "160",
    )
    _assert_same_weights(one_dpo, tmp_path / "dpo2")
    assert _counts(tmp_path / "dpo2")["mean_loss"] == pytest.approx(
        _counts(one_dpo)["mean_loss"], rel=1e-5
    )
