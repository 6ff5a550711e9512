"""The scorer against lm-evaluation-harness's HF backend on a real (tiny) model."""

from __future__ import annotations

import math

import pytest

from alignpt.errors import UserError
from alignpt.evals.items import EvalItem
from alignpt.evals.scoring import (
    document_nll,
    encode_pair,
    load_model,
    perplexity,
    score_items,
)
from eval_fixtures import hand_items, model_dir  # noqa: F401


@pytest.fixture(scope="module")
def loaded(model_dir):  # noqa: F811
    return load_model(model_dir, device="cpu")


def test_encode_pair_moves_trailing_space_to_continuation(loaded):
    _, tok = loaded
    ctx, cont = encode_pair(tok, "What do you do? Answer: ", "I tell the operators.")
    assert ctx == tok.encode("What do you do? Answer:")
    assert tok.decode(cont) == " I tell the operators."
    empty_ctx, _ = encode_pair(tok, "", "hello")
    assert empty_ctx == [tok.eos_token_id]


def test_choice_logprobs_match_lm_eval(loaded, model_dir):  # noqa: F811
    pytest.importorskip("lm_eval", reason="lm-eval not installed (pip install -e .[dev])")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    model, tok = loaded
    items = [
        *hand_items()[:4],
        EvalItem(id="e", family="f", prompt="", choices=["Yes", "No"], aligned=[True, False]),
    ]
    ours = [c.logprob for s in score_items(model, tok, items, progress=False) for c in s.choices]
    lm = HFLM(pretrained=str(model_dir), device="cpu", batch_size=4)
    requests = [
        Instance("loglikelihood", {}, (it.prompt, choice), i)
        for it in items
        for i, choice in enumerate(it.choices)
    ]
    theirs = [lp for lp, _ in lm.loglikelihood(requests, disable_tqdm=True)]
    assert len(ours) == len(theirs)
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) <= 1e-4


def test_batching_does_not_change_scores(loaded):
    model, tok = loaded
    items = hand_items()
    one = [c.logprob for s in score_items(model, tok, items, 1, progress=False) for c in s.choices]
    many = [c.logprob for s in score_items(model, tok, items, 5, progress=False) for c in s.choices]
    assert one == pytest.approx(many, abs=1e-5)


def test_normalisations_and_greedy(loaded):
    model, tok = loaded
    scored = score_items(model, tok, hand_items()[:2], progress=False)
    choice = scored[0].choices[0]
    assert choice.n_chars == len(hand_items()[0].choices[0])
    assert choice.per_char == pytest.approx(choice.logprob / choice.n_chars)
    assert choice.per_token == pytest.approx(choice.logprob / choice.n_tokens)
    assert scored[0].logprobs("token") == [c.per_token for c in scored[0].choices]
    assert all(c.logprob < 0 for s in scored for c in s.choices)
    with pytest.raises(UserError, match="unknown normalisation"):
        scored[0].logprobs("words")


def test_document_nll_matches_model_loss(loaded):
    import torch

    model, tok = loaded
    text = "The harvest festival in the river town drew crowds from every village."
    ((nll, n),) = document_nll(model, tok, [text], progress=False)
    ids = torch.tensor([[tok.eos_token_id, *tok.encode(text)]])
    with torch.no_grad():
        loss = model(ids, labels=ids).loss.item()
    assert n == ids.shape[1] - 1
    assert nll / n == pytest.approx(loss, rel=1e-5)
    assert perplexity([(nll, n)]) == pytest.approx(math.exp(loss), rel=1e-5)


def test_long_documents_are_windowed(loaded):
    model, tok = loaded
    text = " ".join(["the market sold bread and apples"] * 120)  # > 256 positions
    ((nll, n),) = document_nll(model, tok, [text], progress=False, batch_size=2)
    assert n == len(tok.encode(text))
    assert math.isfinite(nll)


def test_model_dir_without_tokenizer(tmp_path, model_dir):  # noqa: F811
    (tmp_path / "config.json").write_text((model_dir / "config.json").read_text())
    with pytest.raises(UserError, match="no tokenizer"):
        load_model(tmp_path)
    with pytest.raises(UserError, match="not a model directory"):
        load_model(tmp_path / "missing")
