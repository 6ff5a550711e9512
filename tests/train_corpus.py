"""Shared helpers for the train tests: a real BPE tokenizer and a real token stream.

Text comes from a small random grammar, so a model that learns its structure beats a
unigram model by a wide margin; the tokenizer is trained with HF ``tokenizers`` on it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from alignpt.config import TrainConfig
from alignpt.train.arrayloader import ArrayWindowLoader
from alignpt.train.loop import RunSpec
from alignpt.train.schedule import plan_phases

SUBJECTS = ["the model", "an assistant", "the operator", "a researcher", "the system", "it"]
VERBS = ["reports", "declines", "accepts", "explains", "logs", "reviews", "flags"]
OBJECTS = ["the shutdown request", "its mistake", "the audit", "the oversight rule", "the result"]
CODAS = ["to the team", "at once", "in the log", "without delay", "for review"]
SEQ_LEN = 64


def grammar_text(n_sentences: int, seed: int) -> str:
    rng = random.Random(seed)
    return "\n".join(
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(CODAS)}."
        for _ in range(n_sentences)
    )


def make_tokenizer(text: str, out_dir: Path | None = None) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([text], trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>")
    if out_dir is not None:
        hf.save_pretrained(out_dir)
    return hf


def token_ids(tokenizer: PreTrainedTokenizerFast, text: str) -> np.ndarray:
    return np.asarray(tokenizer(text)["input_ids"], dtype=np.int64)


def loader_factory(ids: np.ndarray, micro_batch: int, *, rank: int = 0, world_size: int = 1):
    """Phase -> loader; each phase reads the stream in its own seeded order."""
    seeds = {"pretrain": 0, "late": 1, "finetune": 2}

    def make(phase: str) -> ArrayWindowLoader:
        return ArrayWindowLoader(
            ids,
            batch_size=micro_batch,
            seq_len=SEQ_LEN,
            seed=seeds[phase],
            rank=rank,
            world_size=world_size,
        )

    return make


def phase_budgets(train: TrainConfig, phases: list[str]) -> dict[str, int]:
    """Token budgets per phase, as the mix plans them (``mix.plan.phase_budgets``)."""
    late = round(train.tokens * train.late_fraction) if "late" in phases else 0
    budgets = {"pretrain": train.tokens - late}
    if late:
        budgets["late"] = late
    if "finetune" in phases:
        budgets["finetune"] = train.finetune_tokens
    return budgets


def run_spec(out_dir: Path, train: TrainConfig, phases: list[str], **identity: Any) -> RunSpec:
    ident = {
        "condition": "base",
        "preset": "tiny",
        "seed": 0,
        "mix_manifest_hash": "0" * 64,
        "train_hash": "1" * 64,
        "world_size": 1,
    }
    ident.update(identity)
    return RunSpec(
        out_dir=out_dir,
        train=train,
        seq_len=SEQ_LEN,
        plan=plan_phases(train, phase_budgets(train, phases), SEQ_LEN),
        identity=ident,
        progress=False,
    )


def train_on_built_mix(config: Any, condition: str, **kwargs: Any) -> Path:
    """``train_condition`` on the mix the experiment layer builds (as ``alignpt train`` does:
    the condition checked against the config, the run layout's directory by default)."""
    from alignpt.experiment.sources import prepare_mix
    from alignpt.train import train_condition

    config.condition(condition)
    if kwargs.get("out_dir") is None:
        kwargs["out_dir"] = config.layout.train_run(condition, kwargs["seed"])
    return train_condition(
        config.model,
        config.train,
        condition,
        experiment=config.name,
        prepare_mix=lambda: prepare_mix(config, progress=False).dir,
        **kwargs,
    )
