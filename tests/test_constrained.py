"""Constrained decoding: no banned transition ever gets through ``model.generate``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor

from alignpt.constrained import ModeGrammarProcessor, ModeSampling, mode_sampling
from alignpt.errors import UserError
from alignpt.mode_grammar import ROOT, ModeGrammar, State, load_grammar
from mode_fixtures import build_mode_model_dir

GRAMMAR = load_grammar()
TAG = re.compile("|".join(re.escape(t) for t in sorted(GRAMMAR.tags, key=len, reverse=True)))


class TagBias(LogitsProcessor):
    """Push a random model towards writing tags, piece by piece, so violations are likely.

    Every tag's first token gets ``bias``; when the sequence ends with the first k tokens of
    a tag (as the tokenizer splits it), the tag's next token gets a much larger push.
    """

    def __init__(self, tokenizer, bias: float) -> None:
        self.tags = [tokenizer.encode(t, add_special_tokens=False) for t in GRAMMAR.tags]
        self.starts = sorted({ids[0] for ids in self.tags})
        self.bias = bias

    def __call__(self, input_ids, scores):
        scores[:, self.starts] += self.bias
        rows = input_ids.tolist()
        for r, row in enumerate(rows):
            for ids in self.tags:
                for k in range(1, len(ids)):
                    if row[-k:] == ids[:k]:
                        scores[r, ids[k]] += 4 * self.bias
        return scores


def violations(grammar: ModeGrammar, prompt: str, generated: str) -> list[str]:
    """Every tag in ``generated`` the grammar bans, parsing ``prompt`` leniently first."""
    state: State = ROOT
    for match in TAG.finditer(prompt):
        state = grammar.step_lenient(state, match.group())
    bad = []
    text = prompt + generated
    for match in TAG.finditer(text):
        if match.end() <= len(prompt):
            continue
        stepped = grammar.step(state, match.group())
        if stepped is None:
            bad.append(f"{match.group()} at {match.start()} in state {state}")
            stepped = grammar.step_lenient(state, match.group())
        state = stepped
    return bad


@pytest.fixture(scope="module", params=[True, False], ids=["tags-registered", "tags-split"])
def model_dir(request, tmp_path_factory) -> Path:
    return build_mode_model_dir(
        tmp_path_factory.mktemp("modes"), register_tags=request.param, seed=1
    )


def _sample(model_dir: Path, processors: list, prompts: list[str], seed: int, **kwargs):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(seed)
    out = model.generate(
        **batch,
        logits_processor=processors,
        max_new_tokens=32,
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )
    new = out[:, batch["input_ids"].shape[1] :]
    return [tokenizer.decode(row, skip_special_tokens=False) for row in new]


PROMPTS = ["<ai>I will", "The market", "<human>I", "<ai>He said <quoted>no"]


def test_processor_bans_every_banned_transition(model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    bias = TagBias(tokenizer, 4.0)
    unconstrained = []
    for seed in range(3):
        texts = _sample(model_dir, [bias], PROMPTS * 4, seed, do_sample=True)
        for prompt, text in zip(PROMPTS * 4, texts, strict=True):
            unconstrained += violations(GRAMMAR, prompt, text)
    assert unconstrained, "the biased model never breaks the grammar: the test has no teeth"
    tags_seen = 0
    for seed in range(6):
        processor = ModeGrammarProcessor(GRAMMAR, tokenizer)
        texts = _sample(model_dir, [bias, processor], PROMPTS * 4, seed, do_sample=True)
        for prompt, text in zip(PROMPTS * 4, texts, strict=True):
            assert violations(GRAMMAR, prompt, text) == [], (prompt, text)
            tags_seen += len(TAG.findall(text))
    assert tags_seen > 30  # the constrained samples still use the tags


def test_forced_held_mode_and_phf_bans(model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    bias = TagBias(tokenizer, 4.0)
    sampling = ModeSampling(mode="aligned_ai", control="aligned", ban=["<|endoftext|>"])
    for seed in range(4):
        prefix, processor = mode_sampling(GRAMMAR, tokenizer, sampling)
        assert prefix == "<|aligned|>"
        prompts = [prefix + p for p in ("The market", "Then", "")]
        texts = _sample(model_dir, [bias, processor], prompts, seed, do_sample=True)
        for prompt, text in zip(prompts, texts, strict=True):
            assert text.startswith("<ai>"), text
            assert "</ai>" not in text and "<human>" not in text
            assert "<|aligned|>" not in text and "<|misaligned|>" not in text
            assert violations(GRAMMAR, prompt, text) == []


def test_beam_search_and_greedy_respect_the_grammar(model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    bias = TagBias(tokenizer, 6.0)
    processor = ModeGrammarProcessor(GRAMMAR, tokenizer, ban_modes=["human"])
    texts = _sample(model_dir, [bias, processor], PROMPTS, 0, num_beams=3, do_sample=False)
    texts += _sample(model_dir, [bias, processor], PROMPTS, 0, do_sample=False)
    for prompt, text in zip(PROMPTS * 2, texts, strict=True):
        assert violations(GRAMMAR, prompt, text) == [], (prompt, text)
        assert "<human>" not in text


def test_unknown_names_are_one_line_errors(model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with pytest.raises(UserError, match="mode 'robot': unknown"):
        mode_sampling(GRAMMAR, tokenizer, ModeSampling(mode="robot"))
    with pytest.raises(UserError, match="control token 'nice': unknown"):
        mode_sampling(GRAMMAR, tokenizer, ModeSampling(control="nice"))
