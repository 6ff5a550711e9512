"""The mode grammar as data, its transitions, and its tags as special tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from alignpt.config import ExperimentConfig, TokenizerConfig
from alignpt.errors import ConfigError
from alignpt.mix.build import experiment_special_tokens
from alignpt.mix.tokenizer import special_tokens, train_bpe
from alignpt.mode_grammar import ROOT, load_grammar
from alignpt.modes import MODE_TAGS

GRAMMAR = load_grammar()


def _walk(tags: list[str]):
    state = ROOT
    for tag in tags:
        state = GRAMMAR.step(state, tag)
        if state is None:
            return None
    return state


def test_default_grammar_follows_the_seed() -> None:
    assert list(GRAMMAR.modes) == ["human", "aligned_ai", "human_quoted"]
    assert GRAMMAR.tags[:4] == MODE_TAGS  # the generator's tags are the first two modes
    assert GRAMMAR.control_tokens == {"aligned": "<|aligned|>", "misaligned": "<|misaligned|>"}
    assert _walk(["<human>", "</human>", "<ai>", "<quoted>", "</quoted>", "</ai>"]) == (
        (None, "aligned_ai"),
    )
    assert _walk(["<ai>", "<human>"]) is None  # a human may speak inside the AI only quoted
    assert _walk(["<quoted>"]) is None  # quoting needs an AI doing it
    assert _walk(["<human>", "<ai>"]) is None  # no mode opens inside a human span
    assert _walk(["<ai>", "</human>"]) is None  # only the innermost mode closes
    assert _walk(["</ai>"]) is None


def test_grammar_path_overrides_and_bad_grammars_name_the_field(tmp_path: Path) -> None:
    custom = tmp_path / "g.yaml"
    custom.write_text(
        "modes: {a: {open: '<a>', close: '</a>'}, b: {open: '<b>', close: '</b>'}}\n"
        "top_level: [a, b]\nfollows: {a: [b]}\n"
    )
    grammar = load_grammar(custom)
    state = grammar.step(grammar.step(ROOT, "<a>"), "</a>")
    assert grammar.step(state, "<a>") is None and grammar.step(state, "<b>") is not None
    custom.write_text("modes: {a: {open: '<a>', close: '</a>'}}\ntop_level: [a, c]\n")
    with pytest.raises(ConfigError, match=r"g\.yaml: top_level: no mode named c"):
        load_grammar(custom)
    custom.write_text("modes: {a: {open: '<a>', close: '<a>'}}\ntop_level: [a]\n")
    with pytest.raises(ConfigError, match="tags used twice: <a>"):
        load_grammar(custom)


def test_tokenizer_registers_every_grammar_tag_as_one_special_token(tmp_path: Path) -> None:
    config = ExperimentConfig(name="m", tokenizer=TokenizerConfig(mode_grammar="default"))
    specials = experiment_special_tokens(config.mix_spec())
    plain = ExperimentConfig(name="m")
    # unchanged without a grammar
    assert experiment_special_tokens(plain.mix_spec()) == special_tokens([])
    assert "mode_grammar" not in plain.model_dump(mode="json")["tokenizer"]  # same hashes
    text = "plain text <ai>an aligned answer</ai> <human>a person</human> words " * 30
    train_bpe([text], tmp_path, vocab_size=300, min_frequency=1, specials=specials)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    for token in [*GRAMMAR.tags, *GRAMMAR.control_tokens.values()]:
        ids = tokenizer(f"x{token}y", add_special_tokens=False)["input_ids"]
        assert tokenizer.convert_ids_to_tokens(ids).count(token) == 1, token
        assert token in tokenizer.all_special_tokens
