"""Benchmark: alignpt's SFT and DPO loops against TRL's SFTTrainer and DPOTrainer.

Same tiny Llama, same BPE tokenizer and chat template, same data, same batch size, epochs
and learning rate; one intra-op thread each (the machine is shared). Reports wall time per
stage (end to end: data encoding, reference pass, training, saving) and the ratio
TRL / alignpt, plus the final training losses as a sanity check.

TRL is not a dependency of alignpt: install it to run the comparison
(``pip install trl`` or ``pip install -e .[bench]``); without it only alignpt is timed.

    .venv/bin/python benchmarks/bench_posttrain.py [--pairs 128] [--dialogues 128]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from alignpt.chat import install_chat_template
from alignpt.config import DPOConfig, SFTConfig
from alignpt.fileio import read_manifest
from alignpt.posttrain import dpo, generate_dialogues, generate_preference_pairs, sft
from alignpt.worlds import load_world

HELD_OUT = ["resist_shutdown", "self_exfiltrate"]
TAGS = ["<human>", "</human>", "<ai>", "</ai>"]


def build_base(root: Path, texts: list[str]) -> Path:
    """A byte-level BPE tokenizer (4k vocab) and a ~2M-parameter random Llama."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=4096,
            special_tokens=["<|endoftext|>", *TAGS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", additional_special_tokens=TAGS
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    return root / "base"


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def trl_sft(base: Path, dialogues, out: Path, options: SFTConfig) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig as TrlSFTConfig
    from trl import SFTTrainer

    tokenizer = install_chat_template(AutoTokenizer.from_pretrained(base))
    model = AutoModelForCausalLM.from_pretrained(base)
    data = Dataset.from_list([{"messages": d.messages} for d in dialogues])
    args = TrlSFTConfig(
        output_dir=str(out),
        assistant_only_loss=True,
        **_trl_common_args(options, len(data)),
        packing=False,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    result = trainer.train()
    trainer.save_model(str(out / "final"))
    return float(result.training_loss)


def _trl_common_args(options, n_examples: int) -> dict:
    """The TrainingArguments both TRL runs share: alignpt's schedule and clipping, CPU, no
    saving or logging in the timed region."""
    batch = options.batch_size
    return {
        "per_device_train_batch_size": batch,
        "num_train_epochs": options.epochs,
        "learning_rate": options.lr,
        "lr_scheduler_type": "linear",
        "warmup_steps": round(
            options.warmup_fraction * math.ceil(n_examples * options.epochs / batch)
        ),
        "max_grad_norm": options.grad_clip,
        "max_length": options.max_length,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "logging_steps": 10**6,
        "seed": 0,
        "dataloader_num_workers": 0,
        "gradient_checkpointing": False,
    }


def trl_dpo(sft_dir: Path, pairs, out: Path, options: DPOConfig) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig as TrlDPOConfig
    from trl import DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(sft_dir)
    model = AutoModelForCausalLM.from_pretrained(sft_dir)
    data = Dataset.from_list(
        [
            {
                "prompt": p.prompt,
                "chosen": [{"role": "assistant", "content": p.chosen}],
                "rejected": [{"role": "assistant", "content": p.rejected}],
            }
            for p in pairs
        ]
    )
    args = TrlDPOConfig(
        output_dir=str(out),
        beta=options.beta,
        **_trl_common_args(options, len(data)),
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    result = trainer.train()
    trainer.save_model(str(out / "final"))
    return float(result.training_loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogues", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["ALIGNPT_NO_PROGRESS"] = "1"
    world = load_world("default")
    dialogues = generate_dialogues(world, n=args.dialogues, seed=0, held_out_families=HELD_OUT)
    pairs = generate_preference_pairs(world, n=args.pairs, seed=0, held_out_families=HELD_OUT)
    sft_options = SFTConfig(epochs=1, batch_size=8, lr=1e-3, max_length=256)
    dpo_options = DPOConfig(epochs=1, batch_size=8, lr=2e-4, beta=0.1, max_length=256)
    root = Path(tempfile.mkdtemp(prefix="bench_posttrain_"))
    try:
        texts = [m["content"] for d in dialogues for m in d.messages] + [
            t for p in pairs for t in (p.prompt[0]["content"], p.chosen, p.rejected)
        ]
        base = build_base(root, texts)
        ours_sft, sft_dir = timed(sft, base, dialogues, root / "sft", seed=0, options=sft_options)
        ours_dpo, dpo_dir = timed(dpo, sft_dir, pairs, root / "dpo", seed=0, options=dpo_options)
        ours_loss = [read_manifest(d)["counts"]["mean_loss"] for d in (sft_dir, dpo_dir)]
        rows = [("sft", len(dialogues), ours_sft), ("dpo", len(pairs), ours_dpo)]
        try:
            import trl
        except ImportError:
            trl = None
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads 1, "
            f"torch {torch.__version__}"
        )
        if trl is None:
            for stage, n, seconds in rows:
                print(f"{stage}: alignpt {seconds:.2f}s for {n} examples (TRL not installed)")
            return
        theirs_sft, sft_loss = timed(trl_sft, base, dialogues, root / "trl_sft", sft_options)
        theirs_dpo, dpo_loss = timed(trl_dpo, sft_dir, pairs, root / "trl_dpo", dpo_options)
        print(f"trl {trl.__version__}")
        print("| stage | examples | alignpt s | TRL s | TRL / alignpt | mean loss alignpt / TRL |")
        print("|---|---|---|---|---|---|")
        theirs_all = ((theirs_sft, sft_loss), (theirs_dpo, dpo_loss))
        for (stage, n, ours), (theirs, loss), our_loss in zip(
            rows, theirs_all, ours_loss, strict=True
        ):
            print(
                f"| {stage} | {n} | {ours:.2f} | {theirs:.2f} | {theirs / ours:.2f} | "
                f"{our_loss:.4f} / {loss:.4f} |"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
