"""Prefix-tree packing of scoring requests: tries, ancestor masks and row layout."""

from __future__ import annotations

import numpy as np
import torch

from alignpt.evals.prefix_tree import PrefixTree, ScoringRequest, pack_trees, plan_trees


def test_choices_of_one_context_share_its_nodes():
    context = list(range(10, 30))
    requests = [ScoringRequest([*context, 1, 2, 3], 3), ScoringRequest([*context, 1, 5], 2)]
    (tree,) = plan_trees(requests)
    # inputs are all but the last token: 20 context nodes, then "1" shared, then "2"
    assert len(tree) == 22
    assert tree.depths == list(range(22))  # one chain: the branch is the last token
    assert tree.predictors == [[19, 20, 21], [19, 20]]
    assert tree.targets == [[1, 2, 3], [1, 5]]


def test_unrelated_requests_get_separate_trees_and_large_trees_split():
    a = ScoringRequest([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 1)
    b = ScoringRequest([50, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 1)
    assert len(plan_trees([a, b])) == 2
    shared = list(range(100, 140))
    many = [ScoringRequest([*shared, 200 + i, 7], 1) for i in range(10)]
    trees = plan_trees(many, max_nodes=45)
    assert len(trees) == 2  # 40 shared + one node each: five requests fit in 45 nodes
    assert sorted(i for t in trees for i in t.request_ids) == list(range(10))


def test_ancestor_matrix_is_each_nodes_own_causal_prefix():
    tree = PrefixTree()
    tree.add(0, ScoringRequest([1, 2, 3, 9], 1))
    tree.add(1, ScoringRequest([1, 4, 9], 1))
    allowed = tree.ancestor_matrix()
    # nodes: 0=1, 1=2, 2=3 (branch a), 3=4 (branch b)
    expected = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 1]], dtype=bool)
    assert (allowed == expected).all()


def test_pack_lays_nodes_in_order_and_padding_sees_only_itself():
    small, large = PrefixTree(), PrefixTree()
    small.add(0, ScoringRequest([1, 2, 3], 1))
    large.add(1, ScoringRequest([5, 6, 7, 8, 9, 10], 2))
    large.add(2, ScoringRequest([5, 6, 7, 8, 9, 11], 1))  # shares node 4 (token 9) as predictor
    batch = pack_trees([large, small], torch.float32, "cpu")
    width = batch.input_ids.shape[1]
    assert width == 5  # the large tree's 5 nodes; the small one is padded from column 2
    assert batch.input_ids[1, :2].tolist() == [1, 2]
    assert batch.position_ids[0].tolist() == [0, 1, 2, 3, 4]
    visible = batch.attention_mask[1, 0] == 0
    for pad in range(2, width):
        assert visible[pad].nonzero().flatten().tolist() == [pad]
        assert visible[:, pad].nonzero().flatten().tolist() == [pad]
    # each predictor node once: large tree nodes 3 and 4, small tree node 1
    assert batch.predictor_rows.tolist() == [0, 0, 1]
    assert batch.predictor_columns.tolist() == [3, 4, 1]
    assert batch.targets.tolist() == [9, 10, 11, 3]
    assert batch.predictor_of_token.tolist() == [0, 1, 1, 2]
    assert batch.request_of_token.tolist() == [1, 1, 2, 0]
