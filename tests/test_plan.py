"""``alignpt plan``: every figure against a hand computation, the paper-scale config, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alignpt.config import ExperimentConfig, load_experiment, parse_model
from alignpt.errors import UserError
from alignpt.experiment.plan import build_plan, resolve_plan
from alignpt.train.presets import PRESETS, model_shape

ROOT = Path(__file__).parent.parent
PAPER_SCALE = ROOT / "configs" / "paper-scale.yaml"


def _small() -> dict:
    return {
        "name": "plan-small",
        "sources": {
            "web": {"path": "web"},
            "synthetic": {"generate": {"n": 10}},
            "late_docs": {"generate": {"n": 10}},
        },
        "conditions": {
            "dosed": {
                "sources": {
                    "web": {"weight": 3.0},
                    "synthetic": {"dose_share": 0.25},
                    "late_docs": {"phase": "late", "weight": 1.0},
                }
            },
            "plain": {"sources": {"web": {}}},
        },
        "tokenizer": {"vocab_size": 1000},
        "model": {
            "preset": "custom",
            "seq_len": 32,
            "overrides": {
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "tie_word_embeddings": True,
            },
        },
        "train": {
            "tokens": 2560,
            "batch_size": 8,
            "late_fraction": 0.2,
            "checkpoint_interval": 4,
            "keep_checkpoints": 2,
            "seeds": [0, 1],
        },
        "plan": {"gpu": "a100", "gpus": 2, "mfu": 0.5, "price_per_gpu_hour": 2.0},
    }


def _plan(data: dict, **flags) -> dict:
    config = parse_model(ExperimentConfig, data, "x.yaml")
    return build_plan(config, resolve_plan(config, **flags))


def test_small_config_matches_hand_computation():
    report = _plan(_small())
    # d=64, f=128, L=2, 4 heads of 16, V=1000, tied; s=32.
    layer = 4 * 64 * 64 + 3 * 64 * 128 + 2 * 64  # q,k,v,o + gate,up,down + 2 RMSNorms
    assert layer == 41088
    matmul = 2 * layer + 64 + 1000 * 64  # layers + final norm + head (= tied embedding)
    params = report["model"]["parameters"]
    assert params == {
        "total": matmul,
        "embedding": 64000,
        "non_embedding": matmul - 64000,
        "matmul": matmul,
    }
    per_token = 6 * matmul + 12 * 2 * 64 * 32
    assert report["model"]["flops_per_token"] == per_token == 926592
    # 2560 tokens / (8 x 32) = 10 steps; late = round(10 x 0.2) = 2.
    dosed = report["conditions"]["dosed"]
    assert [(p["phase"], p["steps"], p["tokens"]) for p in dosed["phases"]] == [
        ("pretrain", 8, 2048),
        ("late", 2, 512),
    ]
    assert dosed["phases"][0]["shares"] == pytest.approx({"synthetic": 0.25, "web": 0.75})
    late = dosed["phases"][1]["shares"]  # weights 3:1 share what the 25% dose leaves
    assert late == pytest.approx({"synthetic": 0.25, "web": 0.5625, "late_docs": 0.1875})
    plain = report["conditions"]["plain"]
    assert plain["phases"][0]["shares"] == {"web (natural size)": 1.0}
    flops = 2560 * per_token
    hours = flops / (312e12 * 0.5) / 3600
    assert dosed["flops"] == flops
    assert dosed["gpu_hours"] == pytest.approx(hours)
    assert dosed["wall_hours"] == pytest.approx(hours / 2)
    assert dosed["cost"] == pytest.approx(2 * hours)
    assert report["runs"] == 4  # 2 conditions x 2 seeds
    assert report["total"]["gpu_hours"] == pytest.approx(4 * hours)
    assert report["total"]["cost"] == pytest.approx(8 * hours)
    # Checkpoints at steps 4, 8 (also the pretrain end) and 10 (late end).
    assert dosed["checkpoints_written"] == 3 and plain["checkpoints_written"] == 3
    assert report["disk"]["checkpoint_bytes"] == 12 * matmul
    assert dosed["checkpoint_disk_peak_bytes"] == (2 + 1 + 2) * 12 * matmul + 4 * matmul
    assert report["disk"]["bytes_per_token"] == 2
    assert report["disk"]["shard_bytes"] == 2560 * 2
    # Micro-batch 8 / (2 GPUs x 1) = 4 sequences of 32.
    assert report["batch"]["micro_batch_per_gpu"] == 4
    act = 2 * (2 * 128 * (9 * 64 + 3 * 64 + 4 * 128)) + 10 * 128 * 1000
    gib = 2**30
    ddp, fsdp = report["memory"]["ddp"], report["memory"]["fsdp"]
    assert ddp["total_gib"] * gib == pytest.approx(20 * matmul + act)
    root = matmul - 2 * layer
    assert fsdp["total_gib"] * gib == pytest.approx(16 * matmul / 2 + 16 * (layer + root) + act)


def test_cli_flags_override_the_plan_section_and_vocab_sets_bytes_per_token():
    data = _small()
    data["tokenizer"]["vocab_size"] = 70000
    report = _plan(data, gpu="h100", mfu=0.25, gpus=1, price_per_gpu_hour=None)
    assert report["hardware"]["gpu"] == "h100" and report["hardware"]["mfu"] == 0.25
    assert report["hardware"]["price_per_gpu_hour"] == 2.0  # None flag: config's value kept
    assert report["disk"]["bytes_per_token"] == 4
    cond = report["conditions"]["plain"]
    assert cond["gpu_hours"] == pytest.approx(cond["flops"] / (989.4e12 * 0.25) / 3600)
    assert report["memory"]["fsdp"]["gathered_layers_gib"] == 0  # one GPU: nothing sharded
    assert report["memory"]["ddp"]["ddp_buckets_gib"] == 0  # and no DDP wrapper


def test_torch_free_shape_matches_the_built_model():
    """``model_shape`` (no torch) counts exactly the parameters of the real Llama model."""
    import torch
    from transformers import LlamaForCausalLM

    from alignpt.experiment.plan import parameter_counts
    from alignpt.train.presets import build_llama_config

    for preset in PRESETS:
        shape = model_shape(preset, vocab_size=50304, seq_len=2048)
        config = build_llama_config(preset, vocab_size=50304, seq_len=2048)
        with torch.device("meta"):
            total = sum(p.numel() for p in LlamaForCausalLM(config).parameters())
        assert parameter_counts(shape)["total"] == total, preset


def test_paper_scale_config_lands_near_the_study():
    """6.9B parameters, 550B tokens, within 1.5x of the study's ~20k H100-hours per run."""
    config = load_experiment(PAPER_SCALE)
    report = build_plan(config, resolve_plan(config))
    assert 6.7e9 < report["model"]["parameters"]["total"] < 7.1e9
    assert set(report["conditions"]) == {
        "unfiltered",
        "filtered",
        "misalignment_upsampled",
        "alignment_upsampled",
    }
    for cond in report["conditions"].values():
        assert cond["tokens"] == pytest.approx(550e9, rel=1e-3)
        assert cond["phases"][1]["tokens"] == pytest.approx(50e9, rel=1e-3)
        assert 20_000 / 1.5 <= cond["gpu_hours"] <= 20_000 * 1.5
    synthetic = report["conditions"]["alignment_upsampled"]["phases"][0]["shares"]
    assert synthetic["aligned_synthetic"] == pytest.approx(0.01)
    memory = report["memory"]
    assert memory["fsdp"]["total_gib"] < memory["capacity_gib"] < memory["ddp"]["total_gib"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        "from alignpt import cli\n"
        f"sys.argv = ['alignpt', 'plan', *{list(args)!r}]\n"
        "try:\n    cli.main()\nexcept SystemExit as done:\n    code = done.code or 0\n"
        "else:\n    code = 0\n"
        "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_prints_tables_and_json_without_importing_torch(tmp_path):
    done = _cli(str(PAPER_SCALE))
    assert done.returncode == 0, done.stderr
    assert "TORCH False" in done.stderr
    assert "alignment_upsampled" in done.stdout and "H100-hours" in done.stdout
    assert "FSDP" in done.stdout
    as_json = _cli(str(PAPER_SCALE), "--json", "--gpu", "h200", "--mfu", "0.5")
    report = json.loads(as_json.stdout)
    assert report["hardware"]["gpu"] == "h200" and report["hardware"]["mfu"] == 0.5


@pytest.mark.parametrize(
    ("change", "flags", "message"),
    [
        ({}, ["--gpu", "v100"], "plan (or its flag): gpu: Input should be 'h100', 'h200'"),
        ({}, ["--mfu", "1.5"], "plan (or its flag): mfu: Input should be less than or equal"),
        ({}, ["--gpus", "3"], "train.batch_size: 8 does not split into 3 GPU(s)"),
        ({"plan": {"gpus": 0}}, [], "plan.gpus: Input should be greater than or equal to 1"),
        ({"model": {"preset": "huge"}}, [], "model.preset: unknown preset 'huge'"),
        ({"tokenizer": {"path": "nowhere"}}, [], "tokenizer.path: "),
    ],
)
def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys, change, flags, message):
    from alignpt import cli

    data = _small()
    for key, value in change.items():
        data[key] = value if key != "model" else {**data["model"], **value}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(sys, "argv", ["alignpt", "plan", str(path), *flags])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_a_config_without_conditions_is_refused():
    data = _small()
    data["conditions"] = {}
    with pytest.raises(UserError, match="conditions: the config has no condition to plan"):
        _plan(data)
