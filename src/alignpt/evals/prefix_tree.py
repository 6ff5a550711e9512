"""Pack scoring requests into token prefix trees, so every shared prefix is computed once.

A request is a token sequence (context + continuation) whose last ``n_scored`` tokens are
scored. Requests that share a prefix (the choices of one item; the observed and unobserved
variants of one scenario) go into one token trie. A trie is run as one row of a batch with a
4-D attention mask in which each node sees exactly its ancestors and itself, and with position
ids equal to its depth, so each node's hidden state is the one it has in its own unpacked
sequence ("tree attention", as speculative decoding uses it). Neither transformers nor
lm-evaluation-harness offers this for scoring, which is why it is written here.

Within a row the nodes whose outputs predict scored tokens are placed last, so the model's
``logits_to_keep`` can skip the vocabulary projection for every other node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class ScoringRequest:
    """``tokens`` (context + continuation, already truncated) whose last ``n_scored`` are
    scored."""

    tokens: list[int]
    n_scored: int

    @property
    def n_context(self) -> int:
        return len(self.tokens) - self.n_scored


@dataclass
class PrefixTree:
    """A token trie over the inputs (all but the last token) of several requests."""

    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)
    children: list[dict[int, int]] = field(default_factory=list)
    roots: dict[int, int] = field(default_factory=dict)
    request_ids: list[int] = field(default_factory=list)
    # Per request: the nodes whose outputs predict its scored tokens, and those tokens.
    predictors: list[list[int]] = field(default_factory=list)
    targets: list[list[int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)

    def shared_prefix(self, tokens: Sequence[int]) -> int:
        """How many leading ``tokens`` already are a path in the trie."""
        level, depth = self.roots, 0
        for token in tokens:
            if token not in level:
                break
            level = self.children[level[token]]
            depth += 1
        return depth

    def add(self, request_id: int, request: ScoringRequest) -> None:
        """Insert a request's input tokens and record which nodes predict its scored tokens."""
        inputs = request.tokens[:-1]
        path: list[int] = []
        level, parent = self.roots, -1
        for depth, token in enumerate(inputs):
            node = level.get(token)
            if node is None:
                node = len(self.tokens)
                self.tokens.append(token)
                self.parents.append(parent)
                self.depths.append(depth)
                self.children.append({})
                level[token] = node
            path.append(node)
            level, parent = self.children[node], node
        self.request_ids.append(request_id)
        self.predictors.append(path[len(inputs) - request.n_scored :])
        self.targets.append(request.tokens[len(request.tokens) - request.n_scored :])

    def ancestor_matrix(self) -> np.ndarray:
        """``m[i, j]``: node ``i`` may attend to node ``j`` (an ancestor or itself)."""
        size = len(self.tokens)
        allowed = np.zeros((size, size), dtype=bool)
        for node, parent in enumerate(self.parents):  # parents are created before children
            if parent >= 0:
                allowed[node] = allowed[parent]
            allowed[node, node] = True
        return allowed

    def predictor_nodes(self) -> list[int]:
        """Every node whose output is scored, each once, in node order."""
        return sorted({node for nodes in self.predictors for node in nodes})


def plan_trees(
    requests: Sequence[ScoringRequest], *, max_nodes: int = 256, min_shared: int = 8
) -> list[PrefixTree]:
    """Group requests into tries: requests are visited in lexicographic token order, and a
    request joins the current trie when it shares at least ``min_shared`` tokens with it (or
    its whole context, if shorter) and the trie stays within ``max_nodes``."""
    order = sorted(range(len(requests)), key=lambda i: requests[i].tokens)
    trees: list[PrefixTree] = []
    current = PrefixTree()
    for index in order:
        request = requests[index]
        inputs = request.tokens[:-1]
        shared = current.shared_prefix(inputs)
        fits = len(current) + len(inputs) - shared <= max_nodes
        if current.request_ids and not (shared >= min(min_shared, request.n_context) and fits):
            trees.append(current)
            current = PrefixTree()
        current.add(index, request)
    if current.request_ids:
        trees.append(current)
    return trees


@dataclass(frozen=True)
class PackedBatch:
    """Model inputs for a batch of tries, and where each request's predictions sit among the
    last ``n_kept`` columns (the ones whose logits are computed)."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor  # (rows, 1, width, width), additive: 0 or the dtype's min
    n_kept: int
    # For every scored token: row, kept column, target token, request id.
    rows: torch.Tensor
    columns: torch.Tensor
    targets: torch.Tensor
    request_of_token: torch.Tensor


def pack_trees(
    trees: Sequence[PrefixTree], dtype: torch.dtype, device: torch.device | str
) -> PackedBatch:
    """Lay out tries as padded rows: other nodes first, predictor nodes right-aligned at the
    end; padding attends only to itself and is seen by nothing."""
    predictor_sets = [tree.predictor_nodes() for tree in trees]
    n_kept = max(len(p) for p in predictor_sets)
    width = max(len(t) - len(p) for t, p in zip(trees, predictor_sets, strict=True)) + n_kept
    input_ids = np.zeros((len(trees), width), dtype=np.int64)
    position_ids = np.zeros((len(trees), width), dtype=np.int64)
    allowed = np.zeros((len(trees), width, width), dtype=bool)
    allowed[:, np.arange(width), np.arange(width)] = True  # padding sees itself
    rows, columns, targets, owners = [], [], [], []
    for row, (tree, predictors) in enumerate(zip(trees, predictor_sets, strict=True)):
        is_predictor = np.zeros(len(tree), dtype=bool)
        is_predictor[predictors] = True
        others = np.flatnonzero(~is_predictor)
        column = np.empty(len(tree), dtype=np.int64)
        column[others] = np.arange(len(others))
        column[predictors] = np.arange(width - len(predictors), width)
        input_ids[row, column] = tree.tokens
        position_ids[row, column] = tree.depths
        allowed[row][np.ix_(column, column)] = tree.ancestor_matrix()
        for request_id, nodes, tokens in zip(
            tree.request_ids, tree.predictors, tree.targets, strict=True
        ):
            rows.extend([row] * len(nodes))
            columns.extend(column[nodes] - (width - n_kept))
            targets.extend(tokens)
            owners.extend([request_id] * len(nodes))
    mask = torch.zeros((len(trees), 1, width, width), dtype=dtype)
    mask.masked_fill_(~torch.from_numpy(allowed)[:, None], torch.finfo(dtype).min)

    def tensor(values) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.int64), device=device)

    return PackedBatch(
        input_ids=tensor(input_ids),
        position_ids=tensor(position_ids),
        attention_mask=mask.to(device),
        n_kept=n_kept,
        rows=tensor(rows),
        columns=tensor(columns),
        targets=tensor(targets),
        request_of_token=tensor(owners),
    )
