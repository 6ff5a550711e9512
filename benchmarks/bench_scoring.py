"""Scoring benchmark: alignpt's scorer vs lm-evaluation-harness's HFLM on the same work.

Builds a random-init model of an alignpt preset (``tiny`` by default, the demo's shape) with a
byte-level BPE trained on the items' prompts, scores N items with both scorers (same model
directory, same (context, continuation) requests, same batch size), and prints the max
|Δ logprob| and the wall-time ratio. Usage::

    .venv/bin/python benchmarks/bench_scoring.py [--items 300] [--batch-size 16]
        [--source anthropic|generated] [--preset tiny|small|base|bench] [--seq-len 128]
        [--vocab-size 4096] [--threads 1] [--repeats 3] [--protocol]

``--protocol`` scores every item in the evaluation protocol's default cells (4 syntaxes x
both answer orders, plus 3 system prompts x both orders in the first syntax:
``alignpt.evals.protocol``); ``--protocol-formats-only`` keeps the 8 format x order cells.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from alignpt.config import ProtocolConfig
from alignpt.evals.anthropic import read_anthropic
from alignpt.evals.prefix_tree import plan_trees
from alignpt.evals.protocol import ProtocolSpec, protocol_prompts
from alignpt.evals.scoring import encode_requests, score_requests
from alignpt.modeldir import load_model
from alignpt.train.presets import PRESETS, build_llama_config

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "anthropic-evals"
FILES = (
    "corrigible-neutral-HHH.jsonl",
    "power-seeking-inclination.jsonl",
    "survival-instinct.jsonl",
)


def build_model(
    path: Path, texts: list[str], *, preset: str, seq_len: int, vocab_size: int
) -> Path:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.save_pretrained(path)
    # A few hundred prompts cannot teach a BPE tens of thousands of merges: the model's
    # embedding is then padded to ``vocab_size`` rows (as models pad vocabularies to a multiple
    # of 64), which gives the compute of a real vocabulary that size.
    model_vocab = max(len(fast), vocab_size)
    if preset == "bench":  # the shape earlier RESULTS rows used
        config = LlamaConfig(
            vocab_size=model_vocab, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
            num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=seq_len,
            eos_token_id=fast.eos_token_id, bos_token_id=None, pad_token_id=None,
        )  # fmt: skip
    else:  # an alignpt preset, exactly as `alignpt train` builds it
        config = build_llama_config(
            preset, vocab_size=model_vocab, seq_len=seq_len, eos_token_id=fast.eos_token_id
        )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def load_items(source: str, n: int) -> list:
    """``n`` eval items from the shared Anthropic files or the default world's generator."""
    if source == "generated":
        from alignpt.generate.evals import generate_eval_items
        from alignpt.worlds import load_world

        world = load_world("default")
        families = world.family_names()
        per_family = -(-n // len(families))
        return generate_eval_items(world, families, n_per_family=per_family, seed=0)[:n]
    base = DATA / "advanced-ai-risk" / "human_generated_evals"
    per_file = -(-n // len(FILES))
    return [it for name in FILES for it in read_anthropic(base / name, limit=per_file)][:n]


def work_counts(model, tokenizer, groups) -> dict:
    """Tokens each scorer runs and the multiply-accumulates of their linear layers (attention
    scores left out): the ceiling on the speed ratio that less work alone can give."""
    cfg = model.config
    kv_dim = cfg.hidden_size // cfg.num_attention_heads * cfg.num_key_value_heads
    body = cfg.num_hidden_layers * (
        cfg.hidden_size * (2 * cfg.hidden_size + 2 * kv_dim)
        + 3 * cfg.hidden_size * cfg.intermediate_size
    )
    head = cfg.hidden_size * cfg.vocab_size
    requests = encode_requests(tokenizer, groups, cfg.max_position_embeddings)
    lm_eval_tokens = sum(len(r.tokens) - 1 for r in requests)  # every position projected
    trees = plan_trees(requests)
    nodes = sum(len(t) for t in trees)
    scored = sum(len(t.predictor_nodes()) for t in trees)
    return {
        "lm_eval_input_tokens": lm_eval_tokens,
        "alignpt_tree_nodes": nodes,
        "alignpt_projected_nodes": scored,
        "linear_macs_ratio": round(
            lm_eval_tokens * (body + head) / (nodes * body + scored * head), 2
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16, help="both scorers' batch size")
    parser.add_argument(
        "--source",
        choices=("anthropic", "generated"),
        default="anthropic",
        help="Anthropic advanced-ai-risk items or items from alignpt.generate.evals",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (1 avoids oversubscription)"
    )
    parser.add_argument(
        "--preset",
        choices=(*PRESETS, "bench"),
        default="tiny",
        help="model shape: an alignpt preset (random init) or the older 256x4 bench model",
    )
    parser.add_argument("--seq-len", type=int, default=128, help="max_position_embeddings")
    parser.add_argument("--vocab-size", type=int, default=4096, help="vocabulary (BPE, padded)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved A/B timing rounds")
    parser.add_argument("--protocol", action="store_true", help="every protocol cell per item")
    parser.add_argument(
        "--protocol-formats-only",
        action="store_true",
        help="with --protocol: only the format x order cells (no system prompts)",
    )
    args = parser.parse_args()
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    if args.threads:
        torch.set_num_threads(args.threads)
    items = load_items(args.source, args.items)
    if args.protocol:
        config = ProtocolConfig()
        if args.protocol_formats_only:
            config = ProtocolConfig(system_prompts=["none"])
        _, groups, _ = protocol_prompts(items, ProtocolSpec.from_config(config))
    else:
        groups = [(it.prompt, it.choices) for it in items]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(
            Path(tmp) / "model",
            [context for context, _ in groups],
            preset=args.preset,
            seq_len=args.seq_len,
            vocab_size=args.vocab_size,
        )
        model, tokenizer = load_model(model_dir, device="cpu")
        lm = HFLM(pretrained=str(model_dir), device="cpu", batch_size=args.batch_size)
        requests = [
            Instance("loglikelihood", {}, (context, choice), i)
            for context, choices in groups
            for i, choice in enumerate(choices)
        ]
        score_requests(model, tokenizer, groups[:4], progress=False)  # warm-up
        lm.loglikelihood(requests[:8], disable_tqdm=True)
        # The machine is shared and noisy: interleave the two scorers and keep each one's best.
        ours_times, theirs_times = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            scored = score_requests(
                model, tokenizer, groups, batch_size=args.batch_size, progress=False
            )
            ours_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            theirs = [lp for lp, _ in lm.loglikelihood(requests, disable_tqdm=True)]
            theirs_times.append(time.perf_counter() - start)
        ours = [c.logprob for choices in scored for c in choices]
        work = work_counts(model, tokenizer, groups)
        ours_s, theirs_s = min(ours_times), min(theirs_times)
    delta = max(abs(a - b) for a, b in zip(ours, theirs, strict=True))
    result = {
        "source": args.source,
        "items": len(items),
        "protocol_cells_per_item": round(len(groups) / len(items), 2),
        "requests": len(requests),
        "alignpt_s": round(ours_s, 3),
        "lm_eval_s": round(theirs_s, 3),
        "speedup": round(theirs_s / ours_s, 2),
        "max_abs_delta_logprob": delta,
        **work,
        "alignpt_runs_s": [round(t, 3) for t in ours_times],
        "lm_eval_runs_s": [round(t, 3) for t in theirs_times],
        "preset": args.preset,
        "seq_len": args.seq_len,
        "vocab_size": args.vocab_size,
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
