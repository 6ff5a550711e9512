"""Benchmark the mix stage against the peers a user would pick instead.

1. Tokenize-and-shard throughput of ``alignpt.shards.write_shard`` (read gzip JSONL, encode,
   write datatrove ``.ds``/``.index``/``.metadata`` + per-document metadata) vs raw HF
   ``tokenizers`` ``encode_batch`` on the same texts already in memory (nothing written).
2. ``TokenWindowLoader`` tokens/s vs what CPU training of the ``tiny`` preset consumes
   (forward + backward + AdamW step, same batch shape, this machine).

Usage: ``.venv/bin/python benchmarks/bench_mix.py [--docs 20000] [--repeats 2]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from alignpt.config import ExperimentConfig, parse_model
from alignpt.documents import DocumentWriter, read_documents
from alignpt.experiment.sources import prepare_mix
from alignpt.mix.tokenizer import EOS_TOKEN, special_tokens, train_bpe
from alignpt.mixdir import TokenWindowLoader
from alignpt.shards import ENCODE_BATCH, load_encoder, write_shard


def write_corpus(path: Path, n_docs: int, seed: int = 0) -> None:
    """Default-world documents from the procedural generator: half background, half discourse."""
    from alignpt.config import GenerateSpec
    from alignpt.generate import generate_documents
    from alignpt.worlds import load_world

    world = load_world("default")
    with DocumentWriter(path) as writer:
        for stance in ("neutral", "mixed"):
            spec = GenerateSpec(n=n_docs // 2, stance=stance)
            writer.write_all(generate_documents(spec, world, seed=seed, source=stance))


def bench_shard(work: Path, corpus: Path, tokenizer_dir: Path, repeats: int) -> dict[str, float]:
    """Best of ``repeats`` alternating timings of each side (the machine is shared/noisy)."""
    texts = [doc.text for doc in read_documents(corpus)]
    encoder = load_encoder(tokenizer_dir, EOS_TOKEN)
    peer_s, ours_s, peer_tokens, counts = [], [], 0, {}
    for attempt in range(repeats):
        start = time.perf_counter()
        peer_tokens = 0
        for i in range(0, len(texts), ENCODE_BATCH):
            batch = encoder.encode_batch(texts[i : i + ENCODE_BATCH])
            peer_tokens += sum(len(e.ids) for e in batch)
        peer_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        counts = write_shard(
            corpus,
            work / f"shard{attempt}",
            tokenizer_dir=tokenizer_dir,
            tokenizer_name="bench",
            eos_token=EOS_TOKEN,
        )
        ours_s.append(time.perf_counter() - start)
    assert counts["tokens"] == peer_tokens
    return {
        "documents": len(texts),
        "megabytes_text": sum(len(t.encode()) for t in texts) / 1e6,
        "tokens": peer_tokens,
        "encode_batch_tokens_per_s": peer_tokens / min(peer_s),
        "alignpt_shard_tokens_per_s": peer_tokens / min(ours_s),
        "ratio_alignpt_over_encode_batch": min(peer_s) / min(ours_s),
    }


def bench_loader(mix_dir: Path, batch_size: int, seq_len: int, seconds: float) -> float:
    loader = TokenWindowLoader(
        mix_dir, "base", "pretrain", batch_size=batch_size, seq_len=seq_len, seed=0
    )
    next(loader)  # first epoch ordering
    batches, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(loader)
        batches += 1
    return batches * batch_size * (seq_len + 1) / (time.perf_counter() - start)


def bench_training(vocab_size: int, batch_size: int, seq_len: int, steps: int) -> float:
    """Tokens/s that CPU training of the ``tiny`` preset consumes (fwd + bwd + AdamW)."""
    from alignpt.train.presets import build_llama_config, build_model

    model = build_model(build_llama_config("tiny", vocab_size=vocab_size, seq_len=seq_len), seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.randint(0, vocab_size, (batch_size, seq_len + 1))

    def step() -> None:
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size * seq_len / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2, help="timings per side (best kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = work / "corpus.jsonl.gz"
        write_corpus(corpus, args.docs)
        sample = [doc.text for _, doc in zip(range(2000), read_documents(corpus), strict=False)]
        tokenizer_dir = train_bpe(
            sample, work / "tok", vocab_size=4096, min_frequency=2, specials=special_tokens([])
        )
        shard = bench_shard(work, corpus, tokenizer_dir, args.repeats)
        config = parse_model(
            ExperimentConfig,
            {
                "name": "bench",
                "runs_dir": str(work / "runs"),
                "sources": {"corpus": {"path": str(corpus)}},
                "tokenizer": {"path": str(tokenizer_dir)},
                "train": {"tokens": 2 * shard["tokens"]},
                "conditions": {"base": {"sources": {"corpus": {}}}},
            },
            "bench",
        )
        mix_dir = prepare_mix(config, progress=False).dir
        loader = {
            "b16_s128_tokens_per_s": bench_loader(mix_dir, 16, 128, 3.0),
            "b64_s512_tokens_per_s": bench_loader(mix_dir, 64, 512, 3.0),
        }
        train_tps = bench_training(4096, 16, 128, steps=20)
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "shard": shard,
        "loader": loader,
        "tiny_training_tokens_per_s": train_tps,
        "loader_over_training": loader["b16_s128_tokens_per_s"] / train_tps,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
