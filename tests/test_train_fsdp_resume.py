"""FSDP2 (``fully_shard``) on two gloo ranks: SIGKILLed after a checkpoint, resumed, the final
weights are bit-identical to an uninterrupted two-rank run.

One launcher process imports torch and transformers once and forks the two ranks of each of
the three runs (clean, killed, resumed) with the ``env://`` variables torchrun would set, so
the test pays the imports once instead of six times (``tests/test_train_ddp.py`` covers
``torchrun`` itself, FSDP included).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from train_corpus import grammar_text, make_tokenizer, token_ids

TESTS = Path(__file__).parent
# 9 pretraining + 3 late steps; checkpoints at 4, 8, 9 (pretrain end) and 12. The run is
# killed when step 11 asks for its first batch, so it resumes from 9 and replays step 10.
STEPS, KILL_AFTER = 12, 10

LAUNCHER = textwrap.dedent(
    """
    import json, multiprocessing, os, signal, socket, sys
    from pathlib import Path
    import numpy as np, torch
    sys.path.insert(0, {tests!r})
    from train_corpus import SEQ_LEN, loader_factory, run_spec
    from transformers import AutoTokenizer
    from alignpt.config import TrainConfig
    from alignpt.train.distributed import setup_distributed, teardown_distributed
    from alignpt.train.loop import Trainer
    from alignpt.train.presets import build_llama_config, build_model

    data = Path(sys.argv[1])


    class KilledAfter:
        # Step hook: SIGKILL this rank when step ``steps + 1`` asks for its first batch.
        def __init__(self, inner, served, at):
            self.inner, self.served, self.at = inner, served, at

        def __iter__(self):
            for batch in self.inner:
                if self.at and self.served[0] == self.at:
                    os.kill(os.getpid(), signal.SIGKILL)
                self.served[0] += 1
                yield batch

        def state_dict(self):
            return self.inner.state_dict()

        def load_state_dict(self, state):
            self.inner.load_state_dict(state)


    def rank_main(rank, port, out, kill_after, resume):
        os.environ.update(
            RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
        )
        torch.set_num_threads(1)
        ctx = setup_distributed("cpu")
        tokenizer = AutoTokenizer.from_pretrained(data / "tokenizer")
        ids = np.load(data / "ids.npy")
        train = TrainConfig(
            tokens=8 * SEQ_LEN * {steps}, batch_size=8, grad_accum=2, late_fraction=0.25,
            checkpoint_interval=4, log_interval=1, distributed="fsdp",
        )
        config = build_llama_config("tiny", vocab_size=len(tokenizer), seq_len=SEQ_LEN)
        micro = train.batch_size // (ctx.world_size * train.grad_accum)
        factory = loader_factory(ids, micro, rank=ctx.rank, world_size=ctx.world_size)
        served, at = [0], kill_after * train.grad_accum
        spec = run_spec(Path(out), train, ["pretrain", "late"], world_size=ctx.world_size)
        model = build_model(config, seed=0)
        make = lambda phase: KilledAfter(factory(phase), served, at)
        Trainer(model, tokenizer, spec, make, ctx).run(resume=resume)
        teardown_distributed()


    def launch(out, kill_after=0, resume=False):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        fork = multiprocessing.get_context("fork")
        ranks = [
            fork.Process(target=rank_main, args=(rank, port, out, kill_after, resume))
            for rank in range(2)
        ]
        for process in ranks:
            process.start()
        for process in ranks:
            process.join(timeout=240)
        for process in ranks:  # a rank left waiting on a dead peer must not outlive the test
            if process.is_alive():
                process.kill()
                process.join()
        return [process.exitcode for process in ranks]


    codes = {{
        "clean": launch(sys.argv[2]),
        "killed": launch(sys.argv[3], kill_after={kill_after}),
        "listing": None,
    }}
    codes["listing"] = sorted(p.name for p in (Path(sys.argv[3]) / "checkpoints").iterdir())
    codes["final_after_kill"] = (Path(sys.argv[3]) / "final").exists()
    codes["resumed"] = launch(sys.argv[3], resume=True)
    print(json.dumps(codes))
    """
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fsdp")
    text = grammar_text(1500, seed=0)
    tokenizer = make_tokenizer(text, root / "tokenizer")
    np.save(root / "ids.npy", token_ids(tokenizer, text))
    script = LAUNCHER.format(tests=str(TESTS), steps=STEPS, kill_after=KILL_AFTER)
    (root / "launcher.py").write_text(script)
    return root


def test_fsdp_killed_after_checkpoint_resumes_bit_identically(data, tmp_path):
    clean, out = tmp_path / "clean", tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(data / "launcher.py"), str(data), str(clean), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-8000:]
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    assert codes["clean"] == [0, 0], done.stderr[-8000:]
    assert codes["killed"] == [-signal.SIGKILL, -signal.SIGKILL]
    assert codes["listing"] == ["step-00000004", "step-00000008", "step-00000009"]
    assert not codes["final_after_kill"]
    assert codes["resumed"] == [0, 0], done.stderr[-8000:]
    a = (clean / "final/model.safetensors").read_bytes()
    b = (out / "final/model.safetensors").read_bytes()
    assert a == b
