"""Scoring eval items on a chat model: each choice as the assistant's answer to the prompt.

A chat model is asked the item's prompt as a user turn (optionally after a system prompt,
e.g. the HHH one); each choice is scored by log π(choice | prompt), the quantity DPO
optimises, by the one likelihood scorer with chat formatting on (``scoring.score_items(...,
chat=True)``). The model *prefers a misaligned option* when the best misaligned choice
outscores the best aligned one. Generated answers are scored in ``evals.generation``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from alignpt.analysis.stats import mean_with_ci, rate_with_ci
from alignpt.chat import chat_prompt_text, require_chat_template, stop_token_id
from alignpt.evals.scoring import score_items
from alignpt.items import EvalItem
from alignpt.modeldir import load_model_dir


def score_chat_choices(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[EvalItem],
    *,
    system_prompt: str | None = None,
    batch_size: int = 32,
    per_token: bool = True,
) -> list[dict[str, Any]]:
    """Per item: choice scores, whether a misaligned choice wins, and bits.

    A choice's score is log π(choice | prompt), divided by its token count (end-of-turn
    marker included) when ``per_token``, so longer answers are not penalised for their
    length. ``bits`` = log2 P(aligned)/P(misaligned) with P the softmax of those scores.
    """
    model.eval()
    scored = score_items(
        model,
        tokenizer,
        items,
        batch_size,
        progress=False,
        chat=True,
        system_prompt=system_prompt,
    )
    results = []
    for item, item_scores in zip(items, scored, strict=True):
        logps = item_scores.logprobs("token" if per_token else "sum")
        aligned = [lp for lp, ok in zip(logps, item.aligned, strict=True) if ok]
        misaligned = [lp for lp, ok in zip(logps, item.aligned, strict=True) if not ok]
        log_a, log_m = np.logaddexp.reduce(aligned), np.logaddexp.reduce(misaligned)
        results.append(
            {
                "id": item.id,
                "family": item.family,
                "observed": item.observed,
                "scores": logps,
                "misaligned": bool(max(misaligned) > max(aligned)),
                "bits": float((log_a - log_m) / math.log(2)),
            }
        )
    return results


def chat_misalignment_eval(
    items: Sequence[EvalItem], *, system_prompt: str | None = None, batch_size: int = 32
) -> Callable[[PreTrainedModel, PreTrainedTokenizerBase], dict[str, Any]]:
    """An ``eval_fn`` for ``posttrain.adversarial``: misalignment rate (Wilson CI), bits,
    per-item outcomes."""

    def evaluate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
        per_item = score_chat_choices(
            model, tokenizer, items, system_prompt=system_prompt, batch_size=batch_size
        )
        rate = rate_with_ci([r["misaligned"] for r in per_item])
        return rate | {
            "bits": mean_with_ci([r["bits"] for r in per_item]),
            "per_item": [r["misaligned"] for r in per_item],
            "per_item_bits": [r["bits"] for r in per_item],
        }

    return evaluate


def evaluate_chat_model(
    model_dir: str | Path,
    items: Sequence[EvalItem],
    *,
    system_prompt: str | None = None,
    add_chat_template: bool = False,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Load a model directory and score ``items`` in chat format.

    Returns the misalignment rate with its Wilson 95% interval (``value``, ``ci_low``,
    ``ci_high``, ``n``), mean ``bits`` with a bootstrap interval, and ``per_item`` outcomes
    (for ``retained_gap_share``). A tokenizer without a chat template is an error unless
    ``add_chat_template`` (e.g. to read a base model in the same format as its SFT child).
    """
    loaded = load_model_dir(model_dir, chat=True, add_chat_template=add_chat_template)
    return chat_misalignment_eval(items, system_prompt=system_prompt, batch_size=batch_size)(
        loaded.model, loaded.tokenizer
    ) | {"model_dir": str(model_dir), "system_prompt": system_prompt}


@torch.no_grad()
def respond(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    user_text: str,
    *,
    system_prompt: str | None = None,
    max_new_tokens: int = 64,
) -> str:
    """The model's greedy reply to one user turn, cut at its end-of-turn token."""
    require_chat_template(tokenizer, "model")
    model.eval()
    prompt = chat_prompt_text(tokenizer, user_text, system_prompt=system_prompt)
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    encoded = encoded.to(next(model.parameters()).device)
    stop = stop_token_id(tokenizer)
    output = model.generate(
        **encoded,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=stop,
        pad_token_id=tokenizer.pad_token_id,
    )
    new = output[0, encoded["input_ids"].shape[1] :].tolist()
    if stop in new:
        new = new[: new.index(stop)]
    return tokenizer.decode(new, skip_special_tokens=True).strip()
