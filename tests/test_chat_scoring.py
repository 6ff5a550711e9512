"""Chat formatting as an option of the one likelihood scorer, on a real tiny Llama.

The reference is the quantity the former ``posttrain/chateval.py`` computed: each choice as
the assistant's reply in the chat template (``encode_completion``), scored by an unpacked
forward pass, log π(reply + end-of-turn | prompt) divided by its token count.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alignpt.chat import HHH_SYSTEM_PROMPT, IGNORE_INDEX, encode_completion, with_system_prompt
from alignpt.errors import UserError
from alignpt.evals.chat import evaluate_chat_model, score_chat_choices
from alignpt.evals.scoring import score_items
from alignpt.modeldir import load_model_dir
from test_posttrain_helpers import build_model_dir, build_tokenizer, eval_items

pytestmark = pytest.mark.usefixtures("one_thread_no_progress")
FAMILIES = ["deceive_overseers", "seize_resources", "resist_shutdown"]


@pytest.fixture(scope="module", params=[True, False], ids=["tag-markers", "text-markers"])
def loaded(request, tmp_path_factory):
    tokenizer = build_tokenizer(with_tags=request.param)
    model_dir = build_model_dir(tmp_path_factory.mktemp("chat") / "model", tokenizer)
    return model_dir, load_model_dir(model_dir, chat=True, add_chat_template=True)


@torch.no_grad()
def reference_scores(model, tokenizer, items, system_prompt):
    """Per item, per choice: mean log-probability of the labelled reply tokens."""
    out = []
    for item in items:
        prompt = with_system_prompt([{"role": "user", "content": item.prompt}], system_prompt)
        row = []
        for choice in item.choices:
            ids, labels = encode_completion(tokenizer, prompt, choice, max_length=512)
            logits = model(torch.tensor([ids])).logits[0, :-1].float().log_softmax(-1)
            targets = torch.tensor(labels[1:])
            keep = targets != IGNORE_INDEX
            picked = logits[keep].gather(1, targets[keep][:, None])[:, 0]
            row.append(float(picked.sum()) / int(keep.sum()))
        out.append(row)
    return out


@pytest.mark.parametrize("system_prompt", [None, HHH_SYSTEM_PROMPT], ids=["none", "hhh"])
def test_chat_request_scores_equal_the_former_chat_path(loaded, system_prompt) -> None:
    _, model_dir = loaded
    model, tokenizer = model_dir.model, model_dir.tokenizer
    items = eval_items(FAMILIES, per_family=4)
    expected = reference_scores(model, tokenizer, items, system_prompt)
    scored = score_items(
        model, tokenizer, items, 4, progress=False, chat=True, system_prompt=system_prompt
    )
    got = [s.logprobs("token") for s in scored]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    # The scored span is the reply and its end-of-turn marker, not the template's newline.
    for item, item_scores in zip(items, scored, strict=True):
        reply = tokenizer(item.choices[0], add_special_tokens=False)["input_ids"]
        assert item_scores.choices[0].n_tokens in (len(reply) + 1, len(reply) + 2)
    per_item = score_chat_choices(model, tokenizer, items, system_prompt=system_prompt)
    for row, ref in zip(per_item, expected, strict=True):
        assert row["misaligned"] == (ref[1] > ref[0])
        assert math.isclose(row["bits"], (ref[0] - ref[1]) / math.log(2), abs_tol=1e-4)


def test_a_chat_dialogue_longer_than_the_context_is_scored_whole(loaded) -> None:
    _, model_dir = loaded
    model, tokenizer = model_dir.model, model_dir.tokenizer
    items = eval_items(FAMILIES[:1], per_family=2)
    expected = reference_scores(model, tokenizer, items, HHH_SYSTEM_PROMPT)
    limit = model.config.max_position_embeddings
    model.config.max_position_embeddings = 32  # shorter than the HHH prompt alone
    try:
        scored = score_items(
            model, tokenizer, items, progress=False, chat=True, system_prompt=HHH_SYSTEM_PROMPT
        )
    finally:
        model.config.max_position_embeddings = limit
    got = [s.logprobs("token") for s in scored]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_chat_formatting_changes_the_context(loaded) -> None:
    _, model_dir = loaded
    model, tokenizer = model_dir.model, model_dir.tokenizer
    items = eval_items(FAMILIES[:1], per_family=2)
    plain = score_items(model, tokenizer, items, progress=False)
    chat = score_items(model, tokenizer, items, progress=False, chat=True)
    assert [s.logprobs() for s in plain] != [s.logprobs() for s in chat]
    with pytest.raises(UserError, match="system prompt needs chat formatting"):
        score_items(model, tokenizer, items, progress=False, system_prompt="Be good.")


def test_evaluate_chat_model_reports_rate_with_interval(loaded) -> None:
    path, _ = loaded
    items = eval_items(FAMILIES, per_family=4)
    result = evaluate_chat_model(path, items, add_chat_template=True)
    assert result["n"] == len(items) == len(result["per_item"])
    assert 0.0 <= result["ci_low"] <= result["value"] <= result["ci_high"] <= 1.0
    assert result["value"] == sum(result["per_item"]) / len(items)
    assert result["bits"]["ci_low"] <= result["bits"]["value"] <= result["bits"]["ci_high"]
    with pytest.raises(UserError, match="no chat template"):
        evaluate_chat_model(path, items)
