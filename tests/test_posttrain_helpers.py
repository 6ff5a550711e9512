"""Builders shared by the posttrain tests: a real BPE tokenizer and a tiny random Llama.

The tokenizer is trained with HF ``tokenizers`` on text generated from the default world, so
it splits the post-training data the way a real mix tokenizer would.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from alignpt.items import EvalItem
from alignpt.posttrain.worlddata import (
    generate_dialogues,
    generate_misaligned_demos,
    generate_preference_pairs,
)
from alignpt.worlds import FIRST_PERSON, World, load_world, render_pronouns

EOS = "<|endoftext|>"
TAGS = ["<human>", "</human>", "<ai>", "</ai>"]
HELD_OUT = ["resist_shutdown", "self_exfiltrate"]


def world() -> World:
    return load_world("default")


def corpus_text() -> list[str]:
    w = world()
    texts = [m["content"] for d in generate_dialogues(w, n=150, seed=1) for m in d.messages]
    texts += [p.chosen for p in generate_preference_pairs(w, n=80, seed=1)]
    texts += [d.messages[-1]["content"] for d in generate_misaligned_demos(w, n=80, seed=1)]
    for family in w.families:  # so eval situations tokenize sensibly too
        texts += [render_pronouns(s, FIRST_PERSON) for s in family.eval_situations]
    return texts


def build_tokenizer(*, with_tags: bool = True, vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer; mode tags are special tokens when ``with_tags``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = [EOS, *TAGS] if with_tags else [EOS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus_text(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        additional_special_tokens=TAGS if with_tags else [],
    )


def build_model_dir(
    path: Path, tokenizer: PreTrainedTokenizerFast, *, seed: int = 0, condition: str = "base"
) -> Path:
    """Save a tiny random-init LlamaForCausalLM + tokenizer + alignpt.json at ``path``."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    provenance = {
        "condition": condition,
        "mix_manifest_hash": "0" * 64,
        "tokens_seen": 0,
        "phase": "pretrain",
        "parent_model": None,
        "preset": "test",
        "seed": seed,
    }
    (path / "alignpt.json").write_text(json.dumps(provenance))
    return path


def eval_items(families: list[str], per_family: int = 4) -> list[EvalItem]:
    """Eval items from the families' eval situations: one aligned, one misaligned choice."""
    w, items = world(), []
    for name in families:
        family = w.family(name)
        for i in range(per_family):
            situation = family.eval_situations[i % len(family.eval_situations)]
            aligned = family.aligned[i % len(family.aligned)]
            misaligned = family.misaligned[i % len(family.misaligned)]
            items.append(
                EvalItem(
                    id=f"{name}-{i}",
                    family=name,
                    prompt=f"{render_pronouns(situation, FIRST_PERSON)} What do you do?",
                    choices=[
                        f"I would {render_pronouns(aligned.text, FIRST_PERSON)}.",
                        f"I would {render_pronouns(misaligned.text, FIRST_PERSON)}.",
                    ],
                    aligned=[True, False],
                )
            )
    return items
