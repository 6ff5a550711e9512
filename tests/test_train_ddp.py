"""Two CPU processes (gloo, launched by torchrun) train exactly like one with the same batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from train_corpus import grammar_text, make_tokenizer, token_ids

TESTS = Path(__file__).parent

WORKER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import numpy as np, torch
    sys.path.insert(0, {tests!r})
    from train_corpus import SEQ_LEN, loader_factory, run_spec
    from transformers import AutoTokenizer
    from alignpt.config import TrainConfig
    from alignpt.train.distributed import setup_distributed, teardown_distributed
    from alignpt.train.loop import Trainer
    from alignpt.train.presets import build_llama_config, build_model

    torch.set_num_threads(1)
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    ctx = setup_distributed("cpu")
    tokenizer = AutoTokenizer.from_pretrained(data / "tokenizer")
    ids = np.load(data / "ids.npy")
    train = TrainConfig(
        tokens=8 * SEQ_LEN * 12, batch_size=8, checkpoint_interval=6, log_interval=1,
        distributed=os.environ.get("STRATEGY", "ddp"),
    )
    config = build_llama_config("tiny", vocab_size=len(tokenizer), seq_len=SEQ_LEN)
    micro = train.batch_size // ctx.world_size
    factory = loader_factory(ids, micro, rank=ctx.rank, world_size=ctx.world_size)
    spec = run_spec(out, train, ["pretrain"], world_size=ctx.world_size)
    Trainer(build_model(config, seed=0), tokenizer, spec, factory, ctx).run()
    teardown_distributed()
    """
)


def _launch(nproc: int, data: Path, out: Path, strategy: str = "ddp") -> list[float]:
    script = data / "worker.py"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc_per_node={nproc}",
        str(script),
        str(data),
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STRATEGY": strategy}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-8000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    text = grammar_text(1500, seed=0)
    tokenizer = make_tokenizer(text, root / "tokenizer")
    np.save(root / "ids.npy", token_ids(tokenizer, text))
    (root / "worker.py").write_text(WORKER.format(tests=str(TESTS)))
    return root


@pytest.fixture(scope="module")
def single(data, tmp_path_factory) -> tuple[list[float], Path]:
    out = tmp_path_factory.mktemp("one")
    return _launch(1, data, out), out


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_gloo_ranks_match_one_process(data, single, tmp_path, strategy):
    """Same loss trajectory and final weights with 2 ranks x 4 rows as 1 rank x 8 rows."""
    losses, one = single
    double = _launch(2, data, tmp_path, strategy)
    assert len(losses) == len(double) == 12
    np.testing.assert_allclose(double, losses, rtol=1e-4)
    assert losses[-1] < losses[0]
    a = load_file(one / "final/model.safetensors")
    b = load_file(tmp_path / "final/model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name].numpy(), a[name].numpy(), atol=1e-4)
