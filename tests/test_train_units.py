"""Presets, the FLOPs/MFU formula, the phase plan and the learning-rate schedule."""

from __future__ import annotations

import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaForCausalLM

from alignpt.config import TrainConfig
from alignpt.errors import UserError
from alignpt.train.flops import compute_params, flops_per_token, mfu, peak_flops
from alignpt.train.presets import build_llama_config
from alignpt.train.schedule import make_scheduler, micro_batch_size, plan_phases


def _params(preset: str, vocab: int) -> int:
    config = build_llama_config(preset, vocab_size=vocab, seq_len=128)
    with torch.device("meta"):
        return sum(p.numel() for p in LlamaForCausalLM(config).parameters())


@pytest.mark.parametrize(
    ("preset", "vocab", "low", "high"),
    [("tiny", 4096, 0.8e6, 1.3e6), ("small", 8192, 17e6, 26e6), ("base", 50257, 115e6, 130e6)],
)
def test_presets_have_their_advertised_sizes(preset, vocab, low, high):
    assert low <= _params(preset, vocab) <= high


def test_overrides_and_custom_sizes():
    config = build_llama_config(
        "tiny", vocab_size=500, seq_len=64, overrides={"num_hidden_layers": 5}
    )
    assert config.num_hidden_layers == 5 and config.vocab_size == 500
    custom = build_llama_config(
        "custom",
        vocab_size=500,
        seq_len=64,
        overrides={"hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 2},
    )
    assert custom.num_attention_heads == 1 and custom.max_position_embeddings == 64
    with pytest.raises(UserError, match=re.escape("model.preset: unknown preset 'huge'")):
        build_llama_config("huge", vocab_size=500, seq_len=64)
    with pytest.raises(UserError, match=r"model\.overrides\.hidden_sise: not a LlamaConfig"):
        build_llama_config("tiny", vocab_size=500, seq_len=64, overrides={"hidden_sise": 1})
    with pytest.raises(UserError, match=re.escape("model.overrides: preset 'custom' needs")):
        build_llama_config("custom", vocab_size=500, seq_len=64)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": "abc"}, "model.overrides.hidden_size: must be a positive integer"),
        ({"num_attention_heads": 0}, "num_attention_heads: must be a positive integer"),
        ({"hidden_size": 0}, "hidden_size: must be a positive integer"),
        ({"hidden_act": "nope"}, "model.overrides.hidden_act: unknown activation 'nope'"),
        ({"num_key_value_heads": 3}, "num_attention_heads 4 is not a multiple of"),
    ],
)
def test_bad_override_values_are_one_line(overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        build_llama_config("tiny", vocab_size=500, seq_len=64, overrides=overrides)


def test_flops_per_token_matches_counted_flops():
    """The 6N + 12LdT formula against torch's FLOP counter on a real forward+backward."""
    seq = 128
    config = build_llama_config("tiny", vocab_size=1024, seq_len=seq)
    config._attn_implementation = "eager"  # explicit matmuls, so the counter sees attention
    model = LlamaForCausalLM(config)
    batch = torch.randint(0, 1024, (2, seq))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=batch).logits.sum().backward()
    counted = counter.get_total_flops() / batch.numel()
    assert flops_per_token(config, seq) == pytest.approx(counted, rel=0.01)
    with torch.device("meta"):
        total = sum(p.numel() for p in LlamaForCausalLM(config).parameters())
    assert compute_params(config) == total  # tied: the one matrix counts once, as the head


def test_mfu_arithmetic_and_peaks():
    assert mfu(1000.0, 1e9, 1e13) == pytest.approx(0.1)
    assert mfu(1000.0, 1e9, None) is None
    assert peak_flops(torch.device("cpu")) is None
    assert peak_flops(torch.device("cpu"), 2e12) == 2e12


def test_phase_plan_splits_tokens_and_batches():
    train = TrainConfig(tokens=100 * 4 * 16, batch_size=4, late_fraction=0.1, finetune_tokens=640)
    plan = plan_phases(train, {"pretrain": 5760, "late": 640, "finetune": 640}, 16)
    assert [(p.name, p.steps) for p in plan] == [("pretrain", 90), ("late", 10), ("finetune", 10)]
    assert [p.name for p in plan_phases(train, {"pretrain": 6400}, 16)] == ["pretrain"]
    assert micro_batch_size(TrainConfig(batch_size=16, grad_accum=2), 4) == 2
    with pytest.raises(UserError, match=re.escape("train.batch_size: 16 does not split")):
        micro_batch_size(TrainConfig(batch_size=16, grad_accum=3), 1)
    few = TrainConfig(tokens=4 * 4 * 16, batch_size=4, late_fraction=0.1)  # 4 steps: 0 late
    with pytest.raises(UserError, match=re.escape("gives 0 late steps")):
        plan_phases(few, {"pretrain": 230, "late": 26}, 16)


@pytest.mark.parametrize("kind", ["wsd", "cosine"])
def test_schedules_warm_up_hold_and_decay_to_the_floor(kind):
    train = TrainConfig(
        lr=1.0, schedule=kind, warmup_fraction=0.1, decay_fraction=0.2, min_lr_ratio=0.1
    )
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, train, 100)
    rates = []
    for _ in range(100):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[0] < 0.2 and max(rates) == pytest.approx(1.0)
    assert rates[-1] < 0.2 and scheduler.get_last_lr()[0] == pytest.approx(0.1)
    if kind == "wsd":
        assert rates[10:80] == [pytest.approx(1.0)] * 70


def test_device_must_be_cpu_or_an_available_cuda():
    from alignpt.train.distributed import setup_distributed

    with pytest.raises(UserError, match="--device: unknown device 'mps'"):
        setup_distributed("mps")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="cuda requested but no CUDA device"):
            setup_distributed("cuda")
