"""Training throughput of alignpt's loop against a minimal hand-written PyTorch loop.

Both run the same ``LlamaForCausalLM`` (same preset, same init) over the same precomputed
batches with the same AdamW settings; the hand loop is forward, cross-entropy, backward,
clip, step — nothing else. alignpt's loop adds the LR schedule, loss logging, TensorBoard,
validation bookkeeping and its phase-end checkpoint + final save (counted in its time).
Runs alternate A/B/A/B so a shared, noisy machine hits both alike; the best run of each side
is the least-disturbed estimate of its speed (the median is reported too).

CPU:  python benchmarks/bench_train.py --preset tiny --steps 30 --rounds 8
GPU:  python benchmarks/bench_train.py --device cuda --preset base --vocab 50304 --seq-len 1024 \
          --batch-size 32 --steps 50 --rounds 2      (bf16 autocast + torch.compile + fused AdamW)
      (benchmarks/gpu_check.sh runs the whole one-GPU check)

Besides the wall rates (which include compilation on a GPU and the saves), ``*_steady_*``
figures leave out each run's first ``--warmup`` steps: the hand loop restarts its clock after
them, alignpt's figure is the median of the rates its loop logs after them (``metrics.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from alignpt.config import TrainConfig
from alignpt.train.distributed import setup_distributed
from alignpt.train.engine import adamw, autocast_context
from alignpt.train.flops import flops_per_token, mfu, peak_flops
from alignpt.train.loop import RunSpec, Trainer
from alignpt.train.presets import build_llama_config, build_model
from alignpt.train.schedule import PhasePlan


class ListLoader:
    """Replays fixed batches in order (the loader contract, for a fair A/B)."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self.batches, self.position = batches, 0

    def __iter__(self):
        while True:
            yield self.batches[self.position % len(self.batches)]
            self.position += 1

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"]


def word_level_tokenizer(vocab: int) -> PreTrainedTokenizerFast:
    """A real (if trivial) tokenizer with ``vocab`` entries, to save with the model."""
    table = {f"w{i}": i for i in range(vocab - 1)} | {"<|endoftext|>": vocab - 1}
    model = models.WordLevel(vocab=table, unk_token="<|endoftext|>")
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(model), eos_token="<|endoftext|>")


def hand_loop(args, config, batches, device) -> tuple[float, float | None]:
    """Minimal loop: the peer a user would write by hand. Returns (wall, steady) tokens/s."""
    model = build_model(config, seed=0).to(device)
    train = TrainConfig(batch_size=args.batch_size, lr=3e-3)
    optimizer = adamw(
        model,
        lr=train.lr,
        weight_decay=train.weight_decay,
        grouping="matrices",
        betas=(train.beta1, train.beta2),
        fused=device.type == "cuda" or None,
    )
    step_model = torch.compile(model) if device.type == "cuda" else model
    skip = args.warmup if len(batches) > 2 * args.warmup else 0
    start = steady_start = time.perf_counter()
    for index, batch in enumerate(batches):
        if index == skip and skip:
            if device.type == "cuda":
                torch.cuda.synchronize()
            steady_start = time.perf_counter()
        batch = batch.to(device, non_blocking=True)
        with autocast_context(train.precision, device):
            logits = step_model(input_ids=batch[:, :-1]).logits
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1)
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    per_batch = batches[0][:, 1:].numel()
    steady = (len(batches) - skip) * per_batch / (end - steady_start) if skip else None
    return len(batches) * per_batch / (end - start), steady


def alignpt_loop(args, config, batches, device, tokenizer) -> tuple[float, float | None]:
    """alignpt's Trainer over the same batches. Returns (wall incl. saves, steady) tokens/s."""
    train = TrainConfig(
        tokens=len(batches) * args.batch_size * args.seq_len,
        batch_size=args.batch_size,
        lr=3e-3,
        checkpoint_interval=10**9,
        eval_interval=10**9,
        log_interval=max(1, min(10, args.warmup)),
        loss=args.loss,
    )
    with tempfile.TemporaryDirectory() as tmp:
        spec = RunSpec(
            out_dir=Path(tmp),
            train=train,
            seq_len=args.seq_len,
            plan=[PhasePlan("pretrain", len(batches))],
            identity={
                "condition": "bench",
                "preset": args.preset,
                "seed": 0,
                "mix_manifest_hash": "",
                "train_hash": "",
                "world_size": 1,
            },
            progress=False,
        )
        ctx = setup_distributed(device.type)
        trainer = Trainer(
            build_model(config, seed=0), tokenizer, spec, lambda _: ListLoader(batches), ctx
        )
        start = time.perf_counter()
        trainer.run()
        wall = len(batches) * batches[0][:, 1:].numel() / (time.perf_counter() - start)
        records = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").open()]
        logged = [
            r["tokens_per_s"] for r in records if "tokens_per_s" in r and r["step"] > args.warmup
        ]
        return wall, (float(np.median(logged)) if logged else None)


def _best(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=8, help="A/B pairs")
    parser.add_argument(
        "--warm-runs",
        type=int,
        default=1,
        help="untimed runs of both loops over --warmup batches before the rounds (0: none; "
        "the steady figures leave out each run's first --warmup steps anyway)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument(
        "--loss", choices=["full", "chunked"], default="full", help="alignpt's train.loss"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    config = build_llama_config(args.preset, vocab_size=args.vocab, seq_len=args.seq_len)
    rng = np.random.default_rng(0)
    batches = [
        torch.from_numpy(rng.integers(0, args.vocab, (args.batch_size, args.seq_len + 1)))
        for _ in range(args.steps)
    ]
    tokenizer = word_level_tokenizer(args.vocab)
    warm = batches[: args.warmup]
    for _ in range(args.warm_runs):  # kernels, allocator and compile caches
        hand_loop(args, config, warm, device)
        alignpt_loop(args, config, warm, device, tokenizer)
    hand, ours, hand_steady, ours_steady = [], [], [], []
    for round_index in range(args.rounds):
        wall, steady = hand_loop(args, config, batches, device)
        hand.append(wall)
        hand_steady.append(steady)
        wall, steady = alignpt_loop(args, config, batches, device, tokenizer)
        ours.append(wall)
        ours_steady.append(steady)
        print(f"round {round_index}: hand {hand[-1]:,.0f} tok/s  alignpt {ours[-1]:,.0f} tok/s")
    per_token = flops_per_token(config, args.seq_len)
    peak = peak_flops(device)
    result = {
        "preset": args.preset,
        "parameters": sum(p.numel() for p in build_model(config, seed=0).parameters()),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "batch": [args.batch_size, args.seq_len],
        "steps": args.steps,
        "hand_tokens_per_s": hand,
        "alignpt_tokens_per_s": ours,
        "hand_best_tokens_per_s": max(hand),
        "alignpt_best_tokens_per_s": max(ours),
        "alignpt_median_tokens_per_s": float(np.median(ours)),
        "overhead_ratio_best": max(hand) / max(ours),
        "overhead_ratio_median_of_pairs": float(
            np.median([h / o for h, o in zip(hand, ours, strict=True)])
        ),
        "alignpt_mfu": mfu(max(ours), per_token, peak),
        "flops_per_token": per_token,
        "loss": args.loss,
        "hand_steady_tokens_per_s": _best(hand_steady),
        "alignpt_steady_tokens_per_s": _best(ours_steady),
        "hand_steady_mfu": mfu(_best(hand_steady) or 0.0, per_token, peak),
        "alignpt_steady_mfu": mfu(_best(ours_steady) or 0.0, per_token, peak),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
