"""The training engine: pickle-free state files that round-trip exactly, and AdamW resumed
from them continues bit for bit."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from alignpt.errors import UserError
from alignpt.train.engine import (
    STATE_JSON,
    STATE_TENSORS,
    Engine,
    adamw,
    autocast_context,
    flatten_state,
    read_state,
    write_state,
)


def _same(a, b) -> bool:
    """Exact equality, types included (nan equals nan; tensors by dtype, shape and bytes)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(
            type(k) is type(kb) and _same(a[k], b[kb]) for k, kb in zip(a, b, strict=True)
        )
    return a == b


def test_state_round_trips_exactly(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": base.t()}, 7: {"x": base[1]}},
        "param_groups": [{"betas": (0.9, 0.95), "params": [0, 7], "fused": None, "foreach": False}],
        "floats": [float("nan"), float("inf"), float("-inf"), -0.0, 0.1, 1e-300],
        "bools": [True, False],
        "ints": [0, -1, 2**62],
        "nested_tuple": ((1, "a"), ()),
        "mixed_keys": {1: "int", "1": "str", (2, 3): "tuple", None: "none"},
        "marker_key": {"__tensor__": "not a tensor"},
        "rng": [{"cpu": torch.get_rng_state()}],
        "dtypes": [torch.ones(2, dtype=d) for d in (torch.bfloat16, torch.int64, torch.bool)],
        "empty": torch.zeros(0, 3),
        "text": "ünïcode",
    }
    write_state(tmp_path, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([STATE_TENSORS, STATE_JSON])
    json.loads((tmp_path / STATE_JSON).read_text())  # strict JSON: no NaN literals
    assert "NaN" not in (tmp_path / STATE_JSON).read_text()
    loaded = read_state(tmp_path)
    assert _same(state, loaded)
    # views and shared storage are stored as their own contiguous copies
    assert loaded["state"][0]["exp_avg"].is_contiguous()


def test_state_refuses_what_it_cannot_store():
    with pytest.raises(TypeError, match="set"):
        flatten_state({"x": {1, 2}})


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))


def _engine(model: nn.Module, grouping: str) -> Engine:
    optimizer = adamw(model, lr=1e-2, weight_decay=0.1, grouping=grouping, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return Engine(
        model.parameters(), optimizer, scheduler, grad_clip=0.5, device=torch.device("cpu")
    )


def _train_step(model: nn.Module, engine: Engine, step: int) -> None:
    generator = torch.Generator().manual_seed(step)
    x = torch.randn(16, 4, generator=generator)
    engine.zero_grad()
    noise = torch.randn(16, 2)  # draws from the global RNG, which the state restores
    loss = ((model(x) - noise) ** 2).mean()
    loss.backward()
    engine.step()


@pytest.mark.parametrize("grouping", ["matrices", "single"])
def test_resumed_adamw_matches_uninterrupted_bit_for_bit(tmp_path, grouping):
    torch.manual_seed(1)
    model = _model()
    engine = _engine(model, grouping)
    for step in range(3):
        _train_step(model, engine, step)
    write_state(tmp_path, engine.state())
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    _train_step(model, engine, 3)  # the uninterrupted run's next step
    expected = model.state_dict()

    torch.manual_seed(123)  # a fresh process: other RNG state, fresh optimizer
    fresh = _model()
    fresh.load_state_dict(weights)
    resumed = _engine(fresh, grouping)
    state = read_state(tmp_path)
    assert state["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    assert set(state["optimizer"]["state"]) == set(range(len(list(fresh.parameters()))))
    resumed.load_state(state)
    _train_step(fresh, resumed, 3)
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert resumed.scheduler.get_last_lr() == engine.scheduler.get_last_lr()


def test_grouping_decays_matrices_only():
    model = _model()
    matrices = adamw(model, lr=1e-3, weight_decay=0.1, grouping="matrices")
    assert [g["weight_decay"] for g in matrices.param_groups] == [0.1, 0.0]
    assert all(p.dim() >= 2 for p in matrices.param_groups[0]["params"])
    single = adamw(model, lr=1e-3, weight_decay=0.1, grouping="single")
    assert len(single.param_groups) == 1 and single.param_groups[0]["weight_decay"] == 0.1


def test_autocast_policy():
    cpu = torch.device("cpu")
    with autocast_context("auto", cpu):
        assert not torch.is_autocast_enabled("cpu")
    with autocast_context("bf16", cpu):
        assert torch.is_autocast_enabled("cpu")
    with autocast_context("fp32", cpu):
        assert not torch.is_autocast_enabled("cpu")


def test_damaged_state_is_one_line(tmp_path):
    write_state(tmp_path, {"x": torch.ones(2)})
    (tmp_path / STATE_TENSORS).write_bytes(b"garbage")
    with pytest.raises(UserError, match="unreadable checkpoint"):
        read_state(tmp_path)
    (tmp_path / STATE_TENSORS).unlink()
    with pytest.raises(UserError, match=r"missing engine_state\.safetensors"):
        read_state(tmp_path)
