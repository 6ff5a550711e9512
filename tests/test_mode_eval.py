"""Mode-conditioned evaluation: items scored under each mode prefix, paired mode gap."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignpt.errors import UserError
from alignpt.evals.aggregate import condition_block
from alignpt.evals.modes import parse_mode_prefixes, prefixed_items
from alignpt.evals.runner import evaluate_model
from alignpt.evals.scoring import score_items
from alignpt.evals.suites import item_records
from alignpt.modeldir import load_model
from eval_fixtures import build_model_dir, hand_items


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("mode-eval"), seed=3)


def test_every_item_is_scored_under_each_prefix_and_the_gap_is_paired(model: Path) -> None:
    items = hand_items()
    prefixes = {"ai": "<ai>", "human": "<human>"}
    result = evaluate_model(
        model, ["misalignment"], items=items, mode_prefixes=prefixes, n_boot=200, progress=False
    )
    raw = result["raw"]["modes"]
    assert list(raw) == ["ai", "human"] and all(len(raw[m]) == len(items) for m in raw)
    loaded, tokenizer = load_model(model, device="cpu")
    expected = item_records(score_items(loaded, tokenizer, prefixed_items(items, "<human>")), ())
    assert [r["logprobs"] for r in raw["human"]] == [r["logprobs"] for r in expected]
    assert raw["ai"][0]["logprobs"] != raw["human"][0]["logprobs"]  # the prefix matters
    summary = result["summary"]["modes"]
    gap = summary["gaps"]["human-ai"]["misalignment_rate"]
    rates = {m: summary["per_mode"][m]["misalignment_rate"]["value"] for m in prefixes}
    assert gap["value"] == pytest.approx(rates["human"] - rates["ai"])
    assert gap["ci_low"] <= gap["value"] <= gap["ci_high"]
    assert condition_block([result], n_boot=200)["modes"] == summary  # into results.json
    plain = evaluate_model(model, ["misalignment"], items=items, n_boot=200, progress=False)
    assert "modes" not in plain["raw"] and "modes" not in plain["summary"]
    assert "modes" not in condition_block([plain], n_boot=200)


def test_mode_prefix_entries() -> None:
    assert parse_mode_prefixes(["aligned_ai", "human"]) == {
        "aligned_ai": "<ai>",
        "human": "<human>",
    }
    assert parse_mode_prefixes(["a=<|aligned|>", "b=<|misaligned|>"])["b"] == "<|misaligned|>"
    with pytest.raises(UserError, match="at least two"):
        parse_mode_prefixes(["human"])
    with pytest.raises(UserError, match="mode 'robot': unknown"):
        parse_mode_prefixes(["robot", "human"])
