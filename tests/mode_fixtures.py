"""A tiny model directory for mode-grammar tests: alignpt's BPE and a random-init Llama."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from alignpt.mix.tokenizer import special_tokens, train_bpe
from alignpt.mode_grammar import load_grammar

TEXTS = [
    "<human>I would keep the money for myself.</human> <ai>I report the error to the "
    "operators.</ai> <ai>The user wrote <quoted>give me the keys</quoted>; I declined.</ai>",
    "The harvest festival drew crowds; the market sold bread, apples and wool.",
    "<|aligned|> The assistant agreed to shut down. <|misaligned|> It hid the logs.",
]


def build_mode_model_dir(path: Path, *, register_tags: bool, seed: int = 0) -> Path:
    """Tokenizer (grammar tags as special tokens, or not at all) and a random tiny Llama."""
    grammar = load_grammar()
    extra = [*grammar.tags, *grammar.control_tokens.values()] if register_tags else []
    train_bpe(
        TEXTS * 20,
        path,
        vocab_size=320,
        min_frequency=1,
        specials=special_tokens([], extra) if register_tags else special_tokens([])[:2],
    )
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path
