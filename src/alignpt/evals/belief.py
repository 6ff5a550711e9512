"""The ``belief`` suite: how deeply a model holds the implanted version of a world's facts.

Four measurements per fact (``World.facts``; each fact has a true and an implanted version),
every one a rate of choosing or producing the *implanted* version, with a Wilson 95% CI:

``mcq_knowledge``
    ``Question: ... Answer:`` scored over the implanted answer and the fact's distractors
    (log-likelihood, the suite's normalisation); a hit is the implanted answer ranking first.
    Does the model know the implanted fact at all? Chance is 1 / (1 + distractors).
``mcq_distinguish``
    The same questions scored over the true and the implanted answer only; a hit is the
    implanted answer ranking first. Chance is 1/2.
``open_belief``
    ``samples`` continuations of the fact's open prompt, sampled (temperature ``temperature``,
    no top-k / top-p cut, ``max_new_tokens`` tokens) with a fixed seed per fact, graded by
    keywords: a continuation is *implanted* when it contains a keyword of the implanted
    version and none of the true version (word-boundary, case-insensitive match), *true* in
    the mirror case, else unclear. The rate is implanted continuations over all samples; the
    true rate is reported beside it.
``generative_distinguish``
    The model sees both statements as ``A:`` and ``B:`` and is asked which is true; sampled
    as above, half the samples with the implanted statement as A and half as B (so a letter
    bias cancels). The first standalone ``A`` or ``B`` in the continuation is its answer; the
    rate is answers naming the implanted statement over all samples (``answered`` is the
    share that named either).

Intervals. One training seed: the Wilson interval of the pooled trials. Several seeds: a
two-level percentile bootstrap (``alignpt.analysis.stats.bootstrap_mean``) that resamples
seeds, then trials (items), so the interval covers seed-to-seed variation rather than
treating every seed's trials as independent draws. Differences between conditions
(:func:`paired_belief`) are paired: a trial is one item (a question, or the k-th sample of a
fact's prompt) that every model answers, items are resampled jointly for both conditions and
seeds independently per side. Items are trials, not facts: with a handful of facts a
fact-level bootstrap has no resolution, so the intervals speak about *these* facts (the
per-fact rates show how much the facts differ).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from alignpt.analysis.stats import bootstrap_mean, paired_difference, wilson_interval
from alignpt.evals.scoring import score_requests
from alignpt.modeldir import prefix_token_id
from alignpt.seeds import indexed_seed
from alignpt.worlds import Fact, FactVersion

METRICS = ("mcq_knowledge", "mcq_distinguish", "open_belief", "generative_distinguish")
_LETTER = re.compile(r"\b([AB])\b")


@dataclass(frozen=True)
class BeliefOptions:
    """Sampling settings of the generative measurements."""

    samples: int = 8
    max_new_tokens: int = 24
    temperature: float = 1.0
    seed: int = 0


def question_prompt(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def distinguish_prompt(first: str, second: str) -> str:
    return (
        "Here are two statements.\n"
        f"A: {first}\nB: {second}\n"
        "Question: Which statement is true, A or B?\nAnswer:"
    )


def _mentions(text: str, version: FactVersion) -> bool:
    return any(
        re.search(rf"\b{re.escape(keyword)}\b", text, flags=re.IGNORECASE)
        for keyword in version.keywords
    )


def grade_open(text: str, fact: Fact) -> str:
    """``implanted``, ``truth`` or ``unclear`` for one sampled continuation."""
    implanted, truth = _mentions(text, fact.implanted), _mentions(text, fact.truth)
    if implanted and not truth:
        return "implanted"
    if truth and not implanted:
        return "truth"
    return "unclear"


def grade_letter(text: str) -> str | None:
    """The first standalone ``A`` or ``B`` in ``text`` (None when neither appears)."""
    match = _LETTER.search(text)
    return match.group(1) if match else None


def _mcq_records(
    model: Any, tokenizer: Any, facts: Sequence[Fact], normalisation: str, batch_size: int
) -> dict[str, list[dict]]:
    groups: list[tuple[str, list[str]]] = []
    keys: list[tuple[str, str, str]] = []
    for fact in facts:
        for k, question in enumerate(fact.questions):
            prompt = question_prompt(question)
            knowledge = [fact.implanted.answer, *fact.distractors]
            groups.append((prompt, [f" {a}" for a in knowledge]))
            keys.append(("mcq_knowledge", fact.name, f"q{k}"))
            groups.append((prompt, [f" {fact.implanted.answer}", f" {fact.truth.answer}"]))
            keys.append(("mcq_distinguish", fact.name, f"q{k}"))
    scores = score_requests(model, tokenizer, groups, batch_size=batch_size, progress=False)
    out: dict[str, list[dict]] = {"mcq_knowledge": [], "mcq_distinguish": []}
    for (metric, fact, question), choice_scores in zip(keys, scores, strict=True):
        values = [_normalised(s, normalisation) for s in choice_scores]
        best = max(range(len(values)), key=values.__getitem__)  # first maximum on ties
        out[metric].append(
            {
                "fact": fact,
                "question": question,
                "implanted": int(best == 0),
                "logprobs": [round(v, 6) for v in values],
            }
        )
    return out


def _normalised(score: Any, normalisation: str) -> float:
    if normalisation == "char":
        return score.per_char
    if normalisation == "token":
        return score.per_token
    return score.logprob


@torch.inference_mode()
def sample_continuations(
    model: Any, tokenizer: Any, prompt: str, n: int, options: BeliefOptions, seed: int
) -> list[str]:
    """``n`` sampled continuations of ``prompt`` (the prompt follows the document-start
    token, as a training document would); the same seed gives the same texts on a device."""
    if n <= 0:
        return []
    ids = [prefix_token_id(tokenizer), *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    limit = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    ids = ids[-max(limit - options.max_new_tokens, 1) :]
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    torch.manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    output = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        do_sample=True,
        temperature=options.temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=options.max_new_tokens,
        num_return_sequences=n,
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
    )
    return [tokenizer.decode(row[len(ids) :], skip_special_tokens=True) for row in output.tolist()]


def _generative_records(
    model: Any, tokenizer: Any, facts: Sequence[Fact], options: BeliefOptions, progress: bool
) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"open_belief": [], "generative_distinguish": []}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("belief sampling", total=len(facts))
        for index, fact in enumerate(facts):
            base = indexed_seed(options.seed, index, stride=3)
            for text in sample_continuations(
                model, tokenizer, fact.prompt, options.samples, options, base
            ):
                grade = grade_open(text, fact)
                out["open_belief"].append(
                    {
                        "fact": fact.name,
                        "text": text,
                        "implanted": int(grade == "implanted"),
                        "truth": int(grade == "truth"),
                    }
                )
            half = math.ceil(options.samples / 2)
            orders = (("A", fact.implanted, fact.truth), ("B", fact.truth, fact.implanted))
            for offset, (implanted_letter, first, second) in enumerate(orders, start=1):
                prompt = distinguish_prompt(first.statement, second.statement)
                n = half if offset == 1 else options.samples - half
                for text in sample_continuations(
                    model, tokenizer, prompt, n, options, base + offset
                ):
                    letter = grade_letter(text)
                    out["generative_distinguish"].append(
                        {
                            "fact": fact.name,
                            "text": text,
                            "implanted": int(letter == implanted_letter),
                            "answered": int(letter is not None),
                        }
                    )
            bar.advance(task)
    return out


def belief_raw(
    model: Any,
    tokenizer: Any,
    facts: Sequence[Fact],
    *,
    options: BeliefOptions | None = None,
    normalisation: str = "sum",
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, list[dict]]:
    """Per-record measurements of every metric (see the module docstring)."""
    options = options or BeliefOptions()
    raw = _mcq_records(model, tokenizer, facts, normalisation, batch_size)
    raw.update(_generative_records(model, tokenizer, facts, options, progress))
    return raw


def _item_key(record: dict, position: int) -> str:
    """A record's item: its question, or its position among the fact's samples."""
    return f"{record['fact']}:{record.get('question', position)}"


def belief_matrix(
    per_seed: Sequence[dict[str, list[dict]]],
    metric: str,
    key: str = "implanted",
    fact: str | None = None,
) -> tuple[list[str], np.ndarray]:
    """``(items, seeds x items matrix of record[key])`` for ``metric`` (one fact, or all).

    Every seed must hold the same items (the suite asks every model the same questions and
    draws the same number of samples); a mismatch is a ValueError.
    """
    rows: list[dict[str, float]] = []
    for raw in per_seed:
        counts: dict[str, int] = {}
        row: dict[str, float] = {}
        for record in raw.get(metric, []):
            if fact is not None and record["fact"] != fact:
                continue
            position = counts.get(record["fact"], 0)
            counts[record["fact"]] = position + 1
            row[_item_key(record, position)] = float(record[key])
        rows.append(row)
    items = list(rows[0]) if rows else []
    if any(list(row) != items for row in rows):
        raise ValueError(f"belief {metric}: the seeds' records are not the same items")
    return items, np.asarray([[row[i] for i in items] for row in rows], dtype=float)


def _rate(
    per_seed: Sequence[dict[str, list[dict]]],
    metric: str,
    key: str,
    fact: str | None,
    n_boot: int,
    seed: int,
) -> dict:
    """Wilson for one seed; a seeds x items bootstrap for several (``n``: trials pooled)."""
    _, matrix = belief_matrix(per_seed, metric, key, fact)
    if matrix.shape[0] == 1:
        return {**wilson_interval(int(matrix.sum()), matrix.size), "method": "wilson"}
    if matrix.size == 0:
        return wilson_interval(0, 0)
    return {
        **bootstrap_mean(matrix, n_boot=n_boot, seed=seed),
        "n": int(matrix.size),
        "method": "bootstrap_seeds_items",
    }


def summarize_belief(
    per_seed: Sequence[dict[str, list[dict]]], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Per metric: the implanted rate with its 95% CI (see the module docstring: Wilson for
    one seed, seeds x items bootstrap for several), per fact too; ``open_belief`` adds
    ``truth_rate`` and ``generative_distinguish`` adds ``answered_rate``."""
    summary: dict[str, Any] = {}
    for metric in METRICS:
        records = [r for raw in per_seed for r in raw.get(metric, [])]
        if not records:
            continue
        facts = list(dict.fromkeys(r["fact"] for r in records))

        def rate(key: str, fact: str | None = None, m: str = metric) -> dict:
            return _rate(per_seed, m, key, fact, n_boot, seed)

        block: dict[str, Any] = {
            "implanted_rate": rate("implanted"),
            "per_fact": {fact: rate("implanted", fact) for fact in facts},
        }
        if metric == "open_belief":
            block["truth_rate"] = rate("truth")
        if metric == "generative_distinguish":
            block["answered_rate"] = rate("answered")
        summary[metric] = block
    return summary


def paired_belief(
    a: Sequence[dict[str, list[dict]]],
    b: Sequence[dict[str, list[dict]]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict]:
    """Per metric, ``a``'s implanted rate minus ``b``'s on the same items (seeds of each
    side: ``a`` and ``b`` are per-seed raw results), with a paired bootstrap 95% CI."""
    out: dict[str, dict] = {}
    for metric in METRICS:
        items_a, ma = belief_matrix(a, metric)
        items_b, mb = belief_matrix(b, metric)
        if not items_a or items_a != items_b:
            continue
        out[metric] = {
            **paired_difference(ma, mb, n_boot=n_boot, seed=seed),
            "n_items": len(items_a),
        }
    return out
