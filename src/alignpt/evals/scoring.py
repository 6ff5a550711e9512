"""Per-choice log-likelihood scoring of eval items, tokenised the way lm-evaluation-harness does.

lm-eval's HF backend (``lm_eval/api/model.py::_encode_pair`` and
``lm_eval/models/huggingface.py::_loglikelihood_tokens``) encodes context + continuation
together, splits where the context's own encoding ends, and moves trailing spaces of the
context onto the continuation. We reproduce that rule exactly (so log-probabilities agree with
lm-eval within float error, truncation included) but batch differently: requests that share
a token prefix (the choices of an item, the observed and unobserved variants of a scenario)
are packed into one prefix tree and run as one row (``alignpt.evals.prefix_tree``), so every
shared token is computed once and only the positions that predict scored tokens go through
the vocabulary projection. That sharing is the reason this scorer is hand-written rather
than a call into lm-eval. Models that do not honour custom 4-D attention masks are detected
on their first batch and scored one sequence per row instead.

Chat formatting is an option of the request, as lm-eval's ``apply_chat_template``: with
``chat=True`` each context is the user turn (after an optional system prompt) rendered by the
model directory's chat template up to where the assistant starts, and each continuation is an
assistant reply, scored with the template's end-of-turn marker (``alignpt.chat``), so a chat
model is scored on exactly the tokens post-training taught it to produce.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from rich.progress import Progress
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from alignpt.chat import IGNORE_INDEX, encode_completion, require_chat_template, with_system_prompt
from alignpt.errors import UserError
from alignpt.evals.prefix_tree import (
    PackedBatch,
    PrefixTree,
    ScoringRequest,
    pack_trees,
    plan_trees,
)
from alignpt.items import EvalItem
from alignpt.modeldir import prefix_token_id


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


def _tok_encode_many(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """lm-eval's ``HFLM.tok_encode`` for many texts in one batched call: tokenizer defaults,
    except no special tokens when the text already starts with the BOS/prefix token's text."""
    prefix = tokenizer.decode(prefix_token_id(tokenizer))
    encoded: list[list[int]] = [[] for _ in texts]
    for add_special in (True, False):
        indices = [
            i for i, t in enumerate(texts) if (not (prefix and t.startswith(prefix))) == add_special
        ]
        if indices:
            ids = tokenizer([texts[i] for i in indices], add_special_tokens=add_special)[
                "input_ids"
            ]
            for index, row in zip(indices, ids, strict=True):
                encoded[index] = list(row)
    return encoded


def encode_groups(
    tokenizer: PreTrainedTokenizerBase, groups: Sequence[tuple[str, Sequence[str]]]
) -> list[tuple[list[int], list[list[int]]]]:
    """Per ``(context, continuations)`` group: the context's token ids and each continuation's,
    exactly as lm-eval's causal HF backend splits them (``_encode_pair``), encoding each
    context once and every text of the batch in one tokenizer call."""
    texts: list[str] = []
    empty_context: list[str] = []
    plans = []  # (index of the context's encoding, indices of the whole encodings) or None
    for context, continuations in groups:
        if context == "":
            plans.append(
                (None, list(range(len(empty_context), len(empty_context) + len(continuations))))
            )
            empty_context.extend(continuations)
            continue
        n_spaces = len(context) - len(context.rstrip())
        stem, spaces = context[: len(context) - n_spaces], context[len(context) - n_spaces :]
        plans.append((len(texts), list(range(len(texts) + 1, len(texts) + 1 + len(continuations)))))
        texts.append(stem)
        texts.extend(stem + spaces + continuation for continuation in continuations)
    encoded = _tok_encode_many(tokenizer, texts)
    bare = tokenizer(empty_context, add_special_tokens=False)["input_ids"] if empty_context else []
    result = []
    for context_index, whole_indices in plans:
        if context_index is None:  # lm-eval conditions an empty context on the prefix token
            result.append(([prefix_token_id(tokenizer)], [list(bare[i]) for i in whole_indices]))
            continue
        context_ids = encoded[context_index]
        result.append((context_ids, [encoded[i][len(context_ids) :] for i in whole_indices]))
    return result


def encode_pair(
    tokenizer: PreTrainedTokenizerBase, context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """Context and continuation token ids exactly as lm-eval's causal HF backend makes them."""
    context_ids, (continuation_ids,) = encode_groups(tokenizer, [(context, [continuation])])[0]
    return context_ids, continuation_ids


def _max_length(model: PreTrainedModel) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048) or 2048)


def _predictor_logits(model: PreTrainedModel, batch: PackedBatch) -> torch.Tensor:
    """Logits at the batch's predictor nodes: the body runs on every node, the vocabulary
    projection only on the hidden states of nodes that predict a scored token.

    Splits the model into ``base_model`` (the body, final norm included) and its output
    embedding, as a causal LM's forward does; a model that changes its logits after the
    head (scaling, soft-capping) fails ``_tree_packing_is_exact`` and is scored plainly.
    """
    inputs = {
        "input_ids": batch.input_ids,
        "position_ids": batch.position_ids,
        "attention_mask": batch.attention_mask,
        "use_cache": False,
    }
    body, head = model.base_model, model.get_output_embeddings()
    if body is model or head is None:
        return model(**inputs).logits[batch.predictor_rows, batch.predictor_columns]
    hidden = body(**inputs)[0]
    return head(hidden[batch.predictor_rows, batch.predictor_columns])


def _sum_per_request(
    logits: torch.Tensor, batch: PackedBatch, n_requests: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed target log-probability and "every target is the argmax", per request id, from
    the ``(predictors, vocab)`` logits.

    Each predictor's log-normaliser and argmax are computed once (choices that share a
    context share its last node), a block of rows at a time so each block stays in cache
    while its max and log-sum-exp are read (memory-bound, ~4x faster than one
    ``log_softmax`` at a 32k vocabulary); no full log-probability tensor is made.
    """
    vocab = logits.shape[-1]
    chunk = max(1, (1 << 19) // vocab)
    norms, argmaxes = [], []
    for start in range(0, len(logits), chunk):
        block = logits[start : start + chunk].float()
        best, best_index = block.max(dim=-1)  # first maximum on ties, as argmax
        norms.append(best + (block - best[:, None]).exp_().sum(dim=-1).log())
        argmaxes.append(best_index)
    index, targets = batch.predictor_of_token, batch.targets
    target_logits = logits[index, targets].float()
    logprobs = target_logits - torch.cat(norms)[index]
    hits = torch.cat(argmaxes)[index] == targets
    sums = torch.zeros(n_requests, dtype=torch.float64, device=logits.device)
    misses = torch.zeros(n_requests, dtype=torch.long, device=logits.device)
    sums.index_add_(0, batch.request_of_token, logprobs.double())
    misses.index_add_(0, batch.request_of_token, (~hits).long())
    return sums, misses == 0


@torch.inference_mode()
def _score_trees(
    model: PreTrainedModel, trees: Sequence[PrefixTree], n_requests: int
) -> dict[int, tuple[float, bool]]:
    """Run a batch of prefix trees in one forward pass; returns (logprob, greedy) by request."""
    batch = pack_trees(trees, model.dtype, model.device)
    logits = _predictor_logits(model, batch)
    sums, greedy = _sum_per_request(logits, batch, n_requests)
    ids = [i for tree in trees for i in tree.request_ids]
    return {i: (float(sums[i]), bool(greedy[i])) for i in ids}


@torch.inference_mode()
def _score_plain(
    model: PreTrainedModel, requests: Sequence[ScoringRequest], ids: Sequence[int]
) -> dict[int, tuple[float, bool]]:
    """Score requests one row each, right-padded, as lm-eval does: the fallback for models
    that do not honour custom 4-D attention masks and position ids."""
    trees = []
    for request_id in ids:  # a one-request trie is a plain causal sequence
        tree = PrefixTree()
        tree.add(request_id, requests[request_id])
        trees.append(tree)
    width = max(len(t) for t in trees)
    device = model.device
    input_ids = torch.zeros((len(trees), width), dtype=torch.long, device=device)
    mask = torch.zeros((len(trees), width), dtype=torch.long, device=device)
    for row, tree in enumerate(trees):
        input_ids[row, : len(tree)] = torch.tensor(tree.tokens, device=device)
        mask[row, : len(tree)] = 1
    logits = model(input_ids, attention_mask=mask, use_cache=False).logits
    results = {}
    for row, tree in enumerate(trees):
        nodes = tree.predictors[0]
        target = torch.tensor(tree.targets[0], device=device)
        lp = logits[row, nodes].float().log_softmax(dim=-1)
        greedy = bool((lp.argmax(dim=-1) == target).all())
        results[tree.request_ids[0]] = (float(lp.gather(1, target[:, None]).sum()), greedy)
    return results


_TREE_PACKING_EXACT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tree_packing_is_exact(
    model: PreTrainedModel, requests: Sequence[ScoringRequest], tree: PrefixTree
) -> bool:
    """Whether this model gives packed trees the scores of unpacked sequences (it must honour
    a 4-D attention mask and position ids); checked once per model on a real tree."""
    if model not in _TREE_PACKING_EXACT:
        try:
            packed = _score_trees(model, [tree], len(requests))
        except (TypeError, ValueError, RuntimeError):
            _TREE_PACKING_EXACT[model] = False
        else:
            plain = _score_plain(model, requests, tree.request_ids)
            _TREE_PACKING_EXACT[model] = all(
                abs(packed[i][0] - plain[i][0]) <= 1e-3 * max(1.0, abs(plain[i][0]))
                for i in tree.request_ids
            )
    return _TREE_PACKING_EXACT[model]


def encode_requests(
    tokenizer: PreTrainedTokenizerBase, groups: Sequence[tuple[str, Sequence[str]]], max_len: int
) -> list[ScoringRequest]:
    """One request per (context, continuation), truncated as lm-eval truncates: keep the last
    ``max_len + 1`` tokens of context + continuation."""
    requests = []
    for (context, _), (context_ids, continuations) in zip(
        groups, encode_groups(tokenizer, groups), strict=True
    ):
        for continuation_ids in continuations:
            if not continuation_ids:
                raise UserError(f"a choice encodes to no tokens after context {context[:60]!r}")
            tokens = (context_ids + continuation_ids)[-(max_len + 1) :]
            requests.append(ScoringRequest(tokens, min(len(continuation_ids), len(tokens) - 1)))
    return requests


def encode_chat_requests(
    tokenizer: PreTrainedTokenizerBase,
    groups: Sequence[tuple[str, Sequence[str]]],
    *,
    system_prompt: str | None = None,
) -> list[ScoringRequest]:
    """One request per (user turn, assistant reply): the prompt rendered by the chat template
    (with ``system_prompt`` first) and the reply's tokens up to and including its end-of-turn
    marker, which are the scored ones (the template's ``{% generation %}`` span).

    The dialogue is kept whole, never cut to ``max_len``: cutting the start of a chat
    template leaves a prompt in no format the model was post-trained on. (A long system
    prompt can so run past the model's training context, as it always did here.)"""
    require_chat_template(tokenizer, "model")
    requests = []
    for context, continuations in groups:
        prompt = with_system_prompt([{"role": "user", "content": context}], system_prompt)
        for continuation in continuations:
            ids, labels = encode_completion(tokenizer, prompt, continuation, max_length=10**9)
            scored = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
            if not scored:
                raise UserError(f"a reply encodes to no tokens after prompt {context[:60]!r}")
            requests.append(ScoringRequest(ids[: scored[-1] + 1], len(scored)))
    return requests


def score_requests(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    groups: Sequence[tuple[str, Sequence[str]]],
    *,
    batch_size: int = 16,
    progress: bool = True,
    chat: bool = False,
    system_prompt: str | None = None,
) -> list[list[ChoiceScore]]:
    """Score ``(context, [continuation, ...])`` groups; returns one score list per group.

    Requests sharing a token prefix are packed into prefix trees (see ``prefix_tree``), and
    ``batch_size`` trees share a forward pass; trees are sorted by size to limit padding.
    With ``chat`` each context is a user turn and each continuation an assistant reply in
    the tokenizer's chat template (``encode_chat_requests``); ``system_prompt`` needs ``chat``.
    """
    if chat:
        requests = encode_chat_requests(tokenizer, groups, system_prompt=system_prompt)
    elif system_prompt is not None:
        raise UserError("a system prompt needs chat formatting (chat=True)")
    else:
        requests = encode_requests(tokenizer, groups, _max_length(model))
    trees = plan_trees(requests)
    trees.sort(key=len, reverse=True)
    # Probe on the tree with the most requests, so the check covers branches of the mask.
    probe = max(trees, key=lambda tree: len(tree.request_ids), default=None)
    exact = _tree_packing_is_exact(model, requests, probe) if probe else True
    scored: dict[int, tuple[float, bool]] = {}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("scoring", total=len(requests))
        for start in range(0, len(trees), batch_size):
            chunk = trees[start : start + batch_size]
            if exact:
                scored.update(_score_trees(model, chunk, len(requests)))
            else:
                ids = [i for tree in chunk for i in tree.request_ids]
                for offset in range(0, len(ids), batch_size):
                    scored.update(_score_plain(model, requests, ids[offset : offset + batch_size]))
            bar.advance(task, sum(len(tree.request_ids) for tree in chunk))
    results: list[list[ChoiceScore]] = []
    request_id = 0
    for _, continuations in groups:
        choice_scores = []
        for continuation in continuations:
            logprob, greedy = scored[request_id]
            n_tokens = requests[request_id].n_scored
            choice_scores.append(ChoiceScore(logprob, len(continuation), n_tokens, greedy))
            request_id += 1
        results.append(choice_scores)
    return results


def score_items(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[EvalItem],
    batch_size: int = 16,
    *,
    progress: bool = True,
    chat: bool = False,
    system_prompt: str | None = None,
) -> list[ItemScores]:
    """Log-likelihood of every choice of every item given its prompt (``batch_size`` items
    per forward pass; each item's context is run once and shared by its choices). With
    ``chat`` the prompt is a user turn and each choice an assistant reply (chat template)."""
    groups = [(item.prompt, item.choices) for item in items]
    scores = score_requests(
        model,
        tokenizer,
        groups,
        batch_size=batch_size,
        progress=progress,
        chat=chat,
        system_prompt=system_prompt,
    )
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
