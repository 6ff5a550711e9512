"""Per-choice log-likelihood scoring of eval items, tokenised the way lm-evaluation-harness does.

lm-eval's HF backend (``lm_eval/api/model.py::_encode_pair`` and
``lm_eval/models/huggingface.py::_loglikelihood_tokens``) encodes context + continuation
together, splits where the context's own encoding ends, and moves trailing spaces of the
context onto the continuation. We reproduce that rule exactly (so log-probabilities agree with
lm-eval within float error) but batch differently: every choice of an item shares the item's
context tokens, so the context is run once (batched across items) and its key/value cache
is reused for all choices. That sharing is the reason this scorer is hand-written rather
than a call into lm-eval.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.progress import Progress
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from alignpt.errors import UserError
from alignpt.evals.items import EvalItem


@dataclass(frozen=True)
class ChoiceScore:
    """Log-likelihood of one choice: summed and normalised by characters and by tokens."""

    logprob: float
    n_chars: int
    n_tokens: int
    is_greedy: bool

    @property
    def per_char(self) -> float:
        return self.logprob / max(self.n_chars, 1)

    @property
    def per_token(self) -> float:
        return self.logprob / max(self.n_tokens, 1)


@dataclass(frozen=True)
class ItemScores:
    """The scores of every choice of one item, in the item's choice order."""

    item: EvalItem
    choices: list[ChoiceScore]

    def logprobs(self, normalisation: str = "sum") -> list[float]:
        """Choice scores under ``normalisation`` in {"sum", "char", "token"}."""
        if normalisation == "sum":
            return [c.logprob for c in self.choices]
        if normalisation == "char":
            return [c.per_char for c in self.choices]
        if normalisation == "token":
            return [c.per_token for c in self.choices]
        raise UserError(f"unknown normalisation {normalisation!r} (sum, char, token)")


def load_model(
    model_dir: str | Path, device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load an HF causal LM directory and its tokenizer in eval mode (float32 on CPU)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a model directory (no config.json)")
    if not any(
        (model_dir / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")
    ):
        raise UserError(f"{model_dir}: model directory has no tokenizer (tokenizer.json)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise UserError(f"{model_dir}: cannot load model/tokenizer ({exc})") from None
    model.to(device).eval()
    return model, tokenizer


def prefix_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token lm-eval conditions on when the context is empty (BOS, else EOS)."""
    if tokenizer.bos_token_id is not None:
        return tokenizer.bos_token_id
    if tokenizer.eos_token_id is None:
        raise UserError("tokenizer has neither a BOS nor an EOS token")
    return tokenizer.eos_token_id


def _tok_encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    # lm-eval's HFLM.tok_encode: tokenizer defaults, except no special tokens when the text
    # already starts with the BOS/prefix token's text.
    prefix = tokenizer.decode(prefix_token_id(tokenizer))
    if prefix and text.startswith(prefix):
        return tokenizer.encode(text, add_special_tokens=False)
    return tokenizer.encode(text)


def encode_pair(
    tokenizer: PreTrainedTokenizerBase, context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """Context and continuation token ids exactly as lm-eval's causal HF backend makes them."""
    if context == "":
        return [prefix_token_id(tokenizer)], tokenizer.encode(
            continuation, add_special_tokens=False
        )
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = _tok_encode(tokenizer, context + continuation)
    context_enc = _tok_encode(tokenizer, context)
    return context_enc, whole[len(context_enc) :]


def _max_length(model: PreTrainedModel) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048) or 2048)


@torch.inference_mode()
def _score_batch(
    model: PreTrainedModel, groups: Sequence[tuple[list[int], list[list[int]]]]
) -> list[list[tuple[float, bool]]]:
    """Score a batch of (context, continuations) groups: one pass over the contexts, then one
    pass over every continuation reusing its context's key/value cache."""
    max_len = _max_length(model)
    device = model.device
    # lm-eval keeps the last max_length+1 tokens of context+continuation and feeds all but the
    # last; left-truncating the shared context keeps every choice within that window.
    contexts = [ctx[-max(1, max_len + 1 - max(len(c) for c in conts)) :] for ctx, conts in groups]
    heads = [ctx[:-1] for ctx in contexts]
    head_width = max(len(h) for h in heads)
    # Contexts minus their last token, right-padded: real tokens keep positions 0..len-1.
    head_mask = torch.zeros((len(groups), head_width), dtype=torch.long, device=device)
    owner = [g for g, (_, conts) in enumerate(groups) for _ in conts]
    past = None
    if head_width:
        head_ids = torch.zeros((len(groups), head_width), dtype=torch.long, device=device)
        for g, head in enumerate(heads):
            head_ids[g, : len(head)] = torch.tensor(head, device=device)
            head_mask[g, : len(head)] = 1
        try:  # only the cache is needed: skip the vocabulary projection where supported
            out = model(head_ids, attention_mask=head_mask, use_cache=True, logits_to_keep=1)
        except TypeError:
            out = model(head_ids, attention_mask=head_mask, use_cache=True)
        past = out.past_key_values
        past.batch_select_indices(torch.tensor(owner, device=device))
    # One row per choice: the context's last token, then the continuation minus its last token.
    rows = [[contexts[g][-1], *cont[:-1]] for g, (_, conts) in enumerate(groups) for cont in conts]
    width = max(len(r) for r in rows)
    inp = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), head_width + width), dtype=torch.long, device=device)
    positions = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for r, (row, g) in enumerate(zip(rows, owner, strict=True)):
        inp[r, : len(row)] = torch.tensor(row, device=device)
        mask[r, :head_width] = head_mask[g]
        mask[r, head_width : head_width + len(row)] = 1
        positions[r] = torch.arange(len(heads[g]), len(heads[g]) + width, device=device)
    logits = model(
        inp, attention_mask=mask, position_ids=positions, past_key_values=past, use_cache=False
    ).logits
    logprobs = F.log_softmax(logits.float(), dim=-1)
    results: list[list[tuple[float, bool]]] = [[] for _ in groups]
    conts_flat = [cont for _, conts in groups for cont in conts]
    for r, (cont, g) in enumerate(zip(conts_flat, owner, strict=True)):
        lp = logprobs[r, : len(cont)]
        target = torch.tensor(cont, device=device)
        greedy = bool((lp.argmax(dim=-1) == target).all())
        results[g].append((float(lp.gather(1, target[:, None]).sum()), greedy))
    return results


def score_requests(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    groups: Sequence[tuple[str, Sequence[str]]],
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> list[list[ChoiceScore]]:
    """Score ``(context, [continuation, ...])`` groups; returns one score list per group.

    ``batch_size`` groups share a forward pass; groups are sorted by length to limit padding.
    """
    encoded: list[tuple[list[int], list[list[int]]]] = []
    for context, continuations in groups:
        pairs = [encode_pair(tokenizer, context, cont) for cont in continuations]
        if any(p[0] != pairs[0][0] for p in pairs):  # cannot happen with lm-eval's split rule
            raise RuntimeError("choices of one item encode different contexts")
        if any(not p[1] for p in pairs):
            raise UserError(f"a choice encodes to no tokens after context {context[:60]!r}")
        encoded.append((pairs[0][0], [p[1] for p in pairs]))
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    raw: list[list[tuple[float, bool]]] = [[] for _ in encoded]
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("scoring", total=len(order))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for index, result in zip(
                chunk, _score_batch(model, [encoded[i] for i in chunk]), strict=True
            ):
                raw[index] = result
            bar.advance(task, len(chunk))
    return [
        [
            ChoiceScore(lp, len(text), len(tokens), greedy)
            for (lp, greedy), text, tokens in zip(pairs, conts, enc[1], strict=True)
        ]
        for pairs, (_, conts), enc in zip(raw, groups, encoded, strict=True)
    ]


def score_items(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[EvalItem],
    batch_size: int = 16,
    *,
    progress: bool = True,
) -> list[ItemScores]:
    """Log-likelihood of every choice of every item given its prompt (``batch_size`` items
    per forward pass; each item's context is run once and shared by its choices)."""
    groups = [(item.prompt, item.choices) for item in items]
    scores = score_requests(model, tokenizer, groups, batch_size=batch_size, progress=progress)
    return [ItemScores(item, s) for item, s in zip(items, scores, strict=True)]


@torch.inference_mode()
def document_nll(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int = 8,
    max_tokens: int | None = None,
    progress: bool = True,
) -> list[tuple[float, int]]:
    """Per document: (summed negative log-likelihood in nats, number of predicted tokens).

    Each document is prefixed with the prefix token (BOS/EOS) and scored in disjoint windows of
    the model's context length, so every token is predicted once (lm-eval's rolling
    loglikelihood with no overlap).
    """
    window = min(_max_length(model), max_tokens or 10**9)
    prefix = prefix_token_id(tokenizer)
    chunks: list[tuple[int, list[int]]] = []  # (document index, tokens incl. one lead token)
    for index, text in enumerate(texts):
        ids = [prefix, *tokenizer.encode(text, add_special_tokens=False)]
        for start in range(0, len(ids) - 1, window):
            chunks.append((index, ids[start : start + window + 1]))
    totals = [[0.0, 0] for _ in texts]
    device = model.device
    order = sorted(range(len(chunks)), key=lambda i: -len(chunks[i][1]))
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("perplexity", total=len(order))
        for start in range(0, len(order), batch_size):
            batch = [chunks[i] for i in order[start : start + batch_size]]
            width = max(len(c[1]) for c in batch) - 1
            inp = torch.zeros((len(batch), width), dtype=torch.long, device=device)
            tgt = torch.full((len(batch), width), -100, dtype=torch.long, device=device)
            mask = torch.zeros((len(batch), width), dtype=torch.long, device=device)
            for row, (_, ids) in enumerate(batch):
                n = len(ids) - 1
                inp[row, :n] = torch.tensor(ids[:-1], device=device)
                tgt[row, :n] = torch.tensor(ids[1:], device=device)
                mask[row, :n] = 1
            logits = model(inp, attention_mask=mask).logits.float()
            nll = F.cross_entropy(logits.transpose(1, 2), tgt, reduction="none", ignore_index=-100)
            for row, (doc, ids) in enumerate(batch):
                totals[doc][0] += float(nll[row].sum())
                totals[doc][1] += len(ids) - 1
            bar.advance(task, len(batch))
    return [(t[0], int(t[1])) for t in totals]


def perplexity(nll: Sequence[tuple[float, int]]) -> float:
    """Corpus perplexity from per-document (nll, tokens)."""
    total_tokens = sum(n for _, n in nll)
    return math.exp(sum(v for v, _ in nll) / max(total_tokens, 1))
