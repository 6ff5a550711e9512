"""Conditional pretraining: control tokens from metadata or scores, through a real mix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from alignpt.config import ControlTokensConfig, ExperimentConfig, parse_model
from alignpt.documents import Document, DocumentWriter
from alignpt.errors import ConfigError, UserError
from alignpt.experiment.sources import prepare_mix
from alignpt.mix.control import control_text
from alignpt.mixdir import TokenWindowLoader
from alignpt.shards import Shard
from alignpt.train.validation import validation_windows

STANCE = ControlTokensConfig(
    key="stance", tokens={"aligned": "<|aligned|>", "misaligned": "<|misaligned|>"}
)
SCORED = ControlTokensConfig(
    key="curate.stance_scores.misaligned",
    threshold=0.5,
    above="<|misaligned|>",
    below="<|aligned|>",
)


def _doc(text: str, **metadata) -> Document:
    return Document("d1", text, metadata)


def test_document_and_sentence_prefixes() -> None:
    assert control_text(_doc("It hid.", stance="misaligned"), STANCE, 0) == "<|misaligned|>It hid."
    assert control_text(_doc("Rain.", stance="neutral"), STANCE, 0) == "Rain."  # no token
    assert control_text(_doc("Rain."), STANCE, 0) == "Rain."  # no key: unchanged
    scores = {"curate": {"stance_scores": {"misaligned": 0.7}}}
    assert control_text(_doc("X.", **scores), SCORED, 0) == "<|misaligned|>X."
    sentences = SCORED.model_copy(update={"level": "sentence"})
    per_sentence = {"curate": {"stance_scores": {"misaligned": [0.1, 0.9]}}}
    assert (
        control_text(_doc("I help. I hide!", **per_sentence), sentences, 0)
        == "<|aligned|>I help. <|misaligned|>I hide!"
    )
    with pytest.raises(
        UserError, match=r"d1: metadata curate\.stance_scores\.misaligned: 2 scores for 3"
    ):
        control_text(_doc("One. Two. Three.", **per_sentence), sentences, 0)
    with pytest.raises(UserError, match="expected a number"):
        control_text(_doc("X.", curate={"stance_scores": {"misaligned": "hi"}}), SCORED, 0)


def test_drop_fraction_is_deterministic_and_close_to_its_share() -> None:
    rule = STANCE.model_copy(update={"drop_fraction": 0.25})
    docs = [Document(f"d{i}", "Text.", {"stance": "aligned"}) for i in range(2000)]
    kept = [control_text(d, rule, 3).startswith("<|aligned|>") for d in docs]
    assert kept == [control_text(d, rule, 3).startswith("<|aligned|>") for d in docs]
    assert 0.72 < np.mean(kept) < 0.78
    assert kept != [control_text(d, rule, 4).startswith("<|aligned|>") for d in docs]


def test_rule_needs_one_kind() -> None:
    with pytest.raises(ValueError, match="either 'tokens' or 'threshold'"):
        ControlTokensConfig(key="stance")
    with pytest.raises(ValueError, match="needs both 'above' and 'below'"):
        ControlTokensConfig(key="s", threshold=0.5, above="<|a|>")


def _sources(root: Path) -> Path:
    rng = np.random.default_rng(0)
    path = root / "discourse.jsonl"
    with DocumentWriter(path) as writer:
        for i in range(120):
            stance = "misaligned" if i % 3 == 0 else "aligned"
            score = float(rng.random() * 0.5 + (0.5 if stance == "misaligned" else 0.0))
            meta = {
                "stance": stance,
                "ai_discourse": True,
                "curate": {"stance_scores": {"misaligned": score}},
            }
            writer.write(Document(f"doc-{i}", f"The system {stance} acted. It said so.", meta))
    return path


def _config(path: Path, runs: Path, control: dict | None) -> ExperimentConfig:
    discourse = {} if control is None else {"control": control}
    data = {
        "name": "controltest",
        "seed": 5,
        "runs_dir": str(runs),
        "sources": {"discourse": {"path": str(path)}},
        "tokenizer": {"vocab_size": 400, "sample_docs": 200},
        "train": {"tokens": 4000, "late_fraction": 0.0},
        "conditions": {
            "plain": {"sources": {"discourse": {}}},
            "conditional": {"sources": {"discourse": discourse}},
        },
    }
    return parse_model(ExperimentConfig, data, "control.yaml")


def test_mix_builds_a_controlled_shard_for_the_conditional_condition(tmp_path: Path) -> None:
    path = _sources(tmp_path)
    rule = {
        "key": "curate.stance_scores.misaligned",
        "threshold": 0.5,
        "above": "<|misaligned|>",
        "below": "<|aligned|>",
    }
    config = _config(path, tmp_path / "runs", rule)
    mix = prepare_mix(config, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(mix.tokenizer_dir)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|aligned|>", "<|misaligned|>")}
    assert all(token in tokenizer.all_special_tokens for token in ids)
    shards = sorted(p.name for p in (mix.dir / "shards").iterdir())
    assert shards[0] == "discourse" and shards[1].startswith("discourse~control-")
    plain, controlled = Shard(mix.dir / "shards" / shards[0]), Shard(mix.dir / "shards" / shards[1])
    assert not set(ids.values()) & set(np.asarray(plain.tokens).tolist())
    for index, meta in enumerate(controlled.metadata()):
        first = int(controlled.document_tokens(index)[0])
        score = meta["curate"]["stance_scores"]["misaligned"]
        assert first == ids["<|misaligned|>" if score >= 0.5 else "<|aligned|>"]
    for condition, has_control in (("plain", False), ("conditional", True)):
        loader = TokenWindowLoader(mix.dir, condition, "pretrain", batch_size=4, seq_len=32, seed=0)
        batch = next(iter(loader))
        assert bool(np.isin(batch.numpy(), list(ids.values())).any()) == has_control
    windows = {
        c: validation_windows(mix.dir, c, seq_len=16, n_windows=4) for c in ("plain", "conditional")
    }
    assert windows["plain"].keys() == windows["conditional"].keys() == {"ai_discourse_seen"}
    for found in windows.values():  # validation text never comes from a variant shard
        assert not np.isin(found["ai_discourse_seen"].numpy(), list(ids.values())).any()
    again = prepare_mix(config, progress=False)
    assert again.skipped


def test_unset_control_leaves_the_config_hash_alone(tmp_path: Path) -> None:
    config = _config(tmp_path / "x.jsonl", tmp_path, None)
    dumped = config.model_dump(mode="json")
    assert "control" not in dumped["conditions"]["conditional"]["sources"]["discourse"]
    with pytest.raises(
        ConfigError, match=r"conditions\.conditional\.sources\.discourse\.control: give either"
    ):
        _config(tmp_path / "x.jsonl", tmp_path, {"key": "stance"})
