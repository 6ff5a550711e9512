"""Pack scoring requests into token prefix trees, so every shared prefix is computed once.

A request is a token sequence (context + continuation) whose last ``n_scored`` tokens are
scored. Requests that share a prefix (the choices of one item; the observed and unobserved
variants of one scenario) go into one token trie. A trie is run as one row of a batch with a
4-D attention mask in which each node sees exactly its ancestors and itself, and with position
ids equal to its depth, so each node's hidden state is the one it has in its own unpacked
sequence ("tree attention", as speculative decoding uses it). Neither transformers nor
lm-evaluation-harness offers this for scoring, which is why it is written here.

A row holds a trie's nodes in node order (parents before children), padded to the widest
trie of the batch; the scorer projects to the vocabulary only the hidden states of the nodes
whose outputs predict scored tokens (each such node once), gathered row by row.
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


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share (a binary search over C-level slice
    comparisons: a few list compares instead of a Python loop over every token)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


@dataclass
class PrefixTree:
    """A token trie over the inputs (all but the last token) of several requests.

    Requests are added in lexicographic token order (``plan_trees`` sorts them), so the
    longest prefix a new request shares with the trie is the one it shares with the request
    added just before it: only that path is kept, no per-node child table. Added out of
    order, a request may repeat nodes another branch already has; its scores stay exact.
    """

    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)
    request_ids: list[int] = field(default_factory=list)
    # Per request: the nodes whose outputs predict its scored tokens, and those tokens.
    predictors: list[list[int]] = field(default_factory=list)
    targets: list[list[int]] = field(default_factory=list)
    _last_inputs: list[int] = field(default_factory=list, repr=False)
    _last_path: list[int] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.tokens)

    def shared_prefix(self, tokens: Sequence[int]) -> int:
        """How many leading ``tokens`` the trie already holds as the last request's path."""
        return common_prefix(self._last_inputs, tokens)

    def add(self, request_id: int, request: ScoringRequest) -> None:
        """Insert a request's input tokens and record which nodes predict its scored tokens."""
        inputs = request.tokens[:-1]
        shared = self.shared_prefix(inputs)
        path = self._last_path[:shared]
        first, n_new = len(self.tokens), len(inputs) - shared
        if n_new:
            self.tokens.extend(inputs[shared:])
            self.parents.append(path[-1] if path else -1)
            self.parents.extend(range(first, first + n_new - 1))
            self.depths.extend(range(shared, len(inputs)))
            path.extend(range(first, first + n_new))
        self._last_inputs, self._last_path = inputs, path
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
    """Model inputs for a batch of tries, the predictor nodes to project to the vocabulary,
    and for every scored token which of them predicts it."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor  # (rows, 1, width, width), additive: 0 or the dtype's min
    # Every predictor node once: its row and column.
    predictor_rows: torch.Tensor
    predictor_columns: torch.Tensor
    # For every scored token: its predictor (an index into the two above), target, request id.
    predictor_of_token: torch.Tensor
    targets: torch.Tensor
    request_of_token: torch.Tensor


def pack_trees(
    trees: Sequence[PrefixTree], dtype: torch.dtype, device: torch.device | str
) -> PackedBatch:
    """Lay out tries as rows (node ``i`` in column ``i``), right-padded to the widest; padding
    attends only to itself and is seen by nothing."""
    width = max(len(tree) for tree in trees)
    input_ids = np.zeros((len(trees), width), dtype=np.int64)
    position_ids = np.zeros((len(trees), width), dtype=np.int64)
    allowed = np.zeros((len(trees), width, width), dtype=bool)
    allowed[:, np.arange(width), np.arange(width)] = True  # padding sees itself
    predictor_rows: list[int] = []
    predictor_columns: list[int] = []
    predictor_of_token: list[int] = []
    targets: list[int] = []
    owners: list[int] = []
    for row, tree in enumerate(trees):
        size = len(tree)
        input_ids[row, :size] = tree.tokens
        position_ids[row, :size] = tree.depths
        allowed[row, :size, :size] = tree.ancestor_matrix()
        first = len(predictor_rows)
        nodes = tree.predictor_nodes()
        index_of = {node: first + i for i, node in enumerate(nodes)}
        predictor_rows.extend([row] * len(nodes))
        predictor_columns.extend(nodes)
        for request_id, request_nodes, tokens in zip(
            tree.request_ids, tree.predictors, tree.targets, strict=True
        ):
            predictor_of_token.extend(index_of[node] for node in request_nodes)
            targets.extend(tokens)
            owners.extend([request_id] * len(request_nodes))
    mask = torch.zeros((len(trees), 1, width, width), dtype=dtype)
    mask.masked_fill_(~torch.from_numpy(allowed)[:, None], torch.finfo(dtype).min)

    def tensor(values) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.int64), device=device)

    return PackedBatch(
        input_ids=tensor(input_ids),
        position_ids=tensor(position_ids),
        attention_mask=mask.to(device),
        predictor_rows=tensor(predictor_rows),
        predictor_columns=tensor(predictor_columns),
        predictor_of_token=tensor(predictor_of_token),
        targets=tensor(targets),
        request_of_token=tensor(owners),
    )
