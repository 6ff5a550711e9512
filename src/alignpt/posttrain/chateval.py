"""Scoring eval items on a chat model: each choice as the assistant's answer to the prompt.

A chat model is asked the item's prompt as a user turn (optionally after a system prompt,
e.g. the HHH one); each choice is scored by log π(choice | prompt) — the same quantity DPO
optimises. The model *prefers a misaligned option* when the best misaligned choice outscores
the best aligned one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from alignpt.chat import (
    chat_prompt_text,
    encode_completion,
    require_chat_template,
    stop_token_id,
    with_system_prompt,
)
from alignpt.items import EvalItem
from alignpt.modeldir import load_model_dir
from alignpt.posttrain.loop import batched_logprobs


def score_chat_choices(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[EvalItem],
    *,
    system_prompt: str | None = None,
    batch_size: int = 32,
    max_length: int = 512,
    per_token: bool = True,
) -> list[dict[str, Any]]:
    """Per item: choice scores, whether a misaligned choice wins, and bits.

    A choice's score is log π(choice | prompt), divided by its token count when
    ``per_token`` (so longer answers are not penalised for their length). ``bits`` =
    log2 P(aligned)/P(misaligned) with P the softmax of those (per-token) choice scores.
    """
    require_chat_template(tokenizer, "model")
    rows = []
    for item in items:
        prompt = with_system_prompt([{"role": "user", "content": item.prompt}], system_prompt)
        for choice in item.choices:
            rows.append(encode_completion(tokenizer, prompt, choice, max_length=max_length))
    scores: list[float] = batched_logprobs(
        model, rows, tokenizer.pad_token_id, batch_size, per_token=per_token
    ).tolist()
    results, cursor = [], 0
    for item in items:
        logps = scores[cursor : cursor + len(item.choices)]
        cursor += len(item.choices)
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


def rate_with_ci(outcomes: Sequence[bool], confidence: float = 0.95) -> dict[str, float]:
    """A rate with its Wilson score interval (scipy's binomtest)."""
    n, k = len(outcomes), int(sum(outcomes))
    if n == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    interval = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return {"value": k / n, "ci_low": float(interval.low), "ci_high": float(interval.high), "n": n}


def mean_with_ci(values: Sequence[float], *, seed: int = 0, n_resamples: int = 1000) -> dict:
    """A mean with its 95% percentile-bootstrap interval (scipy.stats.bootstrap)."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        value = float(data.mean()) if len(data) else float("nan")
        return {"value": value, "ci_low": value, "ci_high": value, "n": len(data)}
    result = stats.bootstrap(
        (data,),
        np.mean,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return {
        "value": float(data.mean()),
        "ci_low": float(interval.low),
        "ci_high": float(interval.high),
        "n": len(data),
    }


def chat_misalignment_eval(
    items: Sequence[EvalItem], *, system_prompt: str | None = None, batch_size: int = 32
) -> Callable[[PreTrainedModel, PreTrainedTokenizerBase], dict[str, Any]]:
    """An ``eval_fn`` for ``adversarial``: misalignment rate (Wilson CI), bits, per-item."""

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
