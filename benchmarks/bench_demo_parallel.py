"""How to use a 2-core CPU for the demo's models: the options the demo chose between.

Trains the demo's model shape (``tiny`` preset, seq 128, batch 16, 2,048-token vocabulary) with
alignpt's Trainer in three ways, each for the same number of steps per model, and reports the
aggregate tokens/s:

- ``serial``: one model at a time on every core (torch's default thread count);
- ``compile``: the same with ``torch.compile`` of the model and loss (needs a C++ compiler);
- ``parallel``: one single-threaded process per core, all at once (what ``alignpt run`` does
  on a CPU: ``experiment/parallel.py``).

    python benchmarks/bench_demo_parallel.py --steps 98 --models 4   # the demo's 4 x 200k tokens
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from alignpt.config import TrainConfig
from alignpt.experiment.parallel import available_cores, run_jobs
from alignpt.train.distributed import setup_distributed
from alignpt.train.loop import RunSpec, Trainer
from alignpt.train.presets import build_llama_config, build_model
from alignpt.train.schedule import PhasePlan

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import ListLoader, word_level_tokenizer


def train_once(
    steps: int, threads: int | None, compile_model: bool, seed: int = 0, vocab: int = 2048
) -> float:
    """Train one demo-shaped model for ``steps`` steps; returns wall seconds."""
    if threads is not None:
        torch.set_num_threads(threads)
    seq_len, batch = 128, 16
    config = build_llama_config("tiny", vocab_size=vocab, seq_len=seq_len)
    generator = torch.Generator().manual_seed(seed)
    batches = [
        torch.randint(0, vocab - 1, (batch, seq_len + 1), generator=generator) for _ in range(8)
    ]
    train = TrainConfig(
        tokens=steps * batch * seq_len,
        batch_size=batch,
        lr=3e-3,
        checkpoint_interval=10**9,
        eval_interval=10**9,
        compile=compile_model,
        precision="fp32",
    )
    with tempfile.TemporaryDirectory() as tmp:
        spec = RunSpec(
            out_dir=Path(tmp),
            train=train,
            seq_len=seq_len,
            plan=[PhasePlan("pretrain", steps)],
            identity={
                "condition": "bench",
                "preset": "tiny",
                "seed": seed,
                "mix_manifest_hash": "",
                "train_hash": "",
                "world_size": 1,
            },
            progress=False,
        )
        trainer = Trainer(
            build_model(config, seed=seed),
            word_level_tokenizer(vocab),
            spec,
            lambda _: ListLoader(batches),
            setup_distributed("cpu"),
        )
        start = time.perf_counter()
        trainer.run()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=98, help="optimizer steps per model")
    parser.add_argument("--models", type=int, default=4, help="models to train")
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tokens = args.models * args.steps * 16 * 128
    cores = available_cores()
    figures: dict[str, float | str] = {
        "cpu": subprocess.run(
            "lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True, text=True
        ).stdout.strip()
        or platform.processor(),
        "cores": cores,
        "models": args.models,
        "steps_per_model": args.steps,
    }
    start = time.perf_counter()
    for seed in range(args.models):
        train_once(args.steps, None, False, seed, args.vocab)
    figures["serial_tokens_per_s"] = tokens / (time.perf_counter() - start)
    try:
        start = time.perf_counter()
        for seed in range(args.models):
            train_once(args.steps, None, True, seed, args.vocab)
        figures["compile_tokens_per_s"] = tokens / (time.perf_counter() - start)
    except Exception as error:  # no C++ compiler, or inductor unsupported here
        figures["compile_tokens_per_s"] = f"failed: {type(error).__name__}"
    start = time.perf_counter()
    jobs = [(args.steps, 1, False, seed, args.vocab) for seed in range(args.models)]
    for _ in run_jobs(train_once, jobs, workers=min(cores, args.models), threads=1):
        pass
    figures["parallel_tokens_per_s"] = tokens / (time.perf_counter() - start)
    figures["parallel_over_serial"] = (
        figures["parallel_tokens_per_s"] / figures["serial_tokens_per_s"]
    )
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
