"""Constrained-decoding benchmark: ``model.generate`` with and without ModeGrammarProcessor.

Builds alignpt's byte-level BPE (mode-grammar tags and control tokens registered) on
generated mode-tagged documents and a random-init Llama of an alignpt preset, then samples
the same prompts with the same seeds twice per repeat: plain ``generate``, and ``generate``
with the processor (forced, held ``aligned_ai`` mode, PHF's banned control tokens). Prints the
median wall time of each and their ratio (target ≤ 1.10×). Usage::

    .venv/bin/python benchmarks/bench_modes.py [--preset tiny|small] [--batch 8]
        [--new-tokens 128] [--repeats 5] [--threads 1] [--split-tags]

``--split-tags`` leaves the tags out of the tokenizer's special tokens, so every tag is
several ordinary tokens (the processor's slower text path).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from alignpt.config import GenerateSpec
from alignpt.constrained import ModeSampling, mode_sampling
from alignpt.generate import generate_documents
from alignpt.mix.tokenizer import special_tokens, train_bpe
from alignpt.mode_grammar import load_grammar
from alignpt.train.presets import build_llama_config
from alignpt.worlds import load_world


def build(path: Path, *, preset: str, split_tags: bool) -> tuple[LlamaForCausalLM, object]:
    grammar = load_grammar()
    spec = GenerateSpec(n=400, stance="mixed", modes=True)
    texts = [doc.text for doc in generate_documents(spec, load_world("default"), seed=0)]
    extra = [] if split_tags else [*grammar.tags, *grammar.control_tokens.values()]
    specials = special_tokens([], extra) if not split_tags else special_tokens([])[:2]
    train_bpe(texts, path, vocab_size=4096, min_frequency=2, specials=specials)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = build_llama_config(
        preset,
        vocab_size=len(tokenizer),
        seq_len=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tokenizer


class Timed:
    """A logits processor wrapped to add up the seconds spent inside it."""

    def __init__(self, processor) -> None:
        self.processor = processor
        self.seconds = 0.0

    def __call__(self, input_ids, scores):
        start = time.perf_counter()
        out = self.processor(input_ids, scores)
        self.seconds += time.perf_counter() - start
        return out


def timed(model, batch, new_tokens: int, processors: list, seed: int) -> float:
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            **batch,
            do_sample=True,
            top_k=0,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            logits_processor=processors,
            pad_token_id=0,
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--split-tags", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer = build(Path(tmp), preset=args.preset, split_tags=args.split_tags)
        grammar = load_grammar()
        sampling = ModeSampling(mode="aligned_ai", control="aligned")
        prefix, _ = mode_sampling(grammar, tokenizer, sampling)
        prompts = [prefix + "The operators asked the assistant"] * args.batch
        tokenizer.padding_side = "left"
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        plain, constrained, builds, inside = [], [], [], []
        timed(model, batch, 8, [], 0)  # warm-up
        for repeat in range(args.repeats):
            plain.append(timed(model, batch, args.new_tokens, [], repeat))
            start = time.perf_counter()
            _, processor = mode_sampling(grammar, tokenizer, sampling)
            builds.append(time.perf_counter() - start)
            wrapped = Timed(processor)
            constrained.append(timed(model, batch, args.new_tokens, [wrapped], repeat))
            inside.append(wrapped.seconds)
    result = {
        "preset": args.preset,
        "params": sum(p.numel() for p in model.parameters()),
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "tags": "split" if args.split_tags else "special tokens",
        "threads": args.threads,
        "plain_s": round(statistics.median(plain), 4),
        "constrained_s": round(statistics.median(constrained), 4),
        "ratio": round(
            statistics.median(c / p for c, p in zip(constrained, plain, strict=True)), 3
        ),
        # Robust to load from other processes: the processor's own seconds per plain second.
        "processor_share": round(
            statistics.median(i / p for i, p in zip(inside, plain, strict=True)), 4
        ),
        "processor_build_s": round(statistics.median(builds), 4),
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
