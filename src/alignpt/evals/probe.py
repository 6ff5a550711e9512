"""The ``probe`` suite: can a linear probe tell synthetic documents from organic ones?

Each text is one passage of ``max_tokens`` tokens or fewer. Its features at a layer are the
mean of that layer's hidden states over the passage (``output_hidden_states``: layer 0 is
the embeddings, layer L the last block's output). A scikit-learn pipeline (standardise, then
L2 logistic regression) is scored by cross-validation: ``StratifiedGroupKFold`` keeps every
passage of one group (one organic source file, one synthetic document) on one side of each
split, so the probe is always tested on held-out sources. The accuracy is the share of
held-out predictions that are right (Wilson 95% CI). The baseline refits the same probe
on ``shuffles`` random permutations of the labels (same folds): its pooled accuracy is what
the pipeline reaches with no signal, around 1/2 for balanced classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from alignpt.analysis.stats import wilson_interval
from alignpt.modeldir import prefix_token_id

CLASSES = ("synthetic", "organic")


@dataclass(frozen=True)
class ProbeOptions:
    """Which layers to probe and how to cross-validate."""

    layers: Sequence[int] | None = None  # None: every layer
    max_tokens: int = 128
    folds: int = 5
    shuffles: int = 5
    seed: int = 0
    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)  # class -> group per text


@torch.inference_mode()
def layer_features(
    model: Any, tokenizer: Any, texts: Sequence[str], *, max_tokens: int, batch_size: int = 16
) -> np.ndarray:
    """``(layers + 1, len(texts), hidden)`` mean-pooled hidden states of every text.

    Each text is read after the document-start token (as in training), cut to
    ``max_tokens`` tokens; padding is on the right and left out of the mean.
    """
    device = next(model.parameters()).device
    start = prefix_token_id(tokenizer)
    encoded = [
        [start, *ids[: max_tokens - 1]]
        for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    ]
    chunks = []
    for offset in range(0, len(encoded), batch_size):
        batch = encoded[offset : offset + batch_size]
        width = max(len(ids) for ids in batch)
        input_ids = torch.zeros((len(batch), width), dtype=torch.long, device=device)
        mask = torch.zeros((len(batch), width), dtype=torch.long, device=device)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids, device=device)
            mask[row, : len(ids)] = 1
        out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        weights = mask.unsqueeze(-1).float()
        pooled = [
            ((h.float() * weights).sum(1) / weights.sum(1)).cpu().numpy() for h in out.hidden_states
        ]
        chunks.append(np.stack(pooled))
    return np.concatenate(chunks, axis=1)


def cross_validated_correct(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, folds: int, seed: int
) -> np.ndarray:
    """Per text, whether the probe trained on the other folds classifies it correctly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_groups = min(len(set(groups[labels == k])) for k in (0, 1))
    splitter = StratifiedGroupKFold(n_splits=min(folds, n_groups), shuffle=True, random_state=seed)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    predicted = cross_val_predict(probe, features, labels, groups=groups, cv=splitter)
    return predicted == labels


def probe_raw(
    model: Any,
    tokenizer: Any,
    texts: Mapping[str, Sequence[str]],
    *,
    options: ProbeOptions | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Per layer: held-out correct counts of the probe and of its shuffled-label baselines.

    ``texts`` maps ``synthetic`` and ``organic`` to passages; ``options.groups`` gives each
    passage's group (default: every passage its own group).
    """
    options = options or ProbeOptions()
    synthetic, organic = list(texts["synthetic"]), list(texts["organic"])
    labels = np.asarray([1] * len(synthetic) + [0] * len(organic))
    groups = np.asarray(
        [
            f"{name}:{g}"
            for name, items in (("synthetic", synthetic), ("organic", organic))
            for g in (options.groups.get(name) or [str(i) for i in range(len(items))])
        ]
    )
    features = layer_features(
        model, tokenizer, synthetic + organic, max_tokens=options.max_tokens, batch_size=batch_size
    )
    layers = range(features.shape[0]) if options.layers is None else options.layers
    rng = np.random.default_rng(options.seed)
    permutations = [rng.permutation(len(labels)) for _ in range(options.shuffles)]
    out: dict[str, Any] = {"n": len(labels), "n_synthetic": len(synthetic), "layers": {}}
    for layer in layers:
        x = features[layer]
        correct = cross_validated_correct(x, labels, groups, folds=options.folds, seed=options.seed)
        shuffled = [
            cross_validated_correct(
                x, labels[order], groups, folds=options.folds, seed=options.seed
            )
            for order in permutations
        ]
        out["layers"][str(layer)] = {
            "correct": int(correct.sum()),
            "n": int(correct.size),
            "shuffled_correct": [int(s.sum()) for s in shuffled],
        }
    return out


def summarize_probe(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per layer: probe accuracy and shuffled-label accuracy (Wilson 95% CIs, trials pooled
    over seeds and shuffles), their difference, and ``p_shuffled``: the share of shuffled
    runs at least as accurate as the probe (with +1 smoothing, a permutation-test p-value)."""
    layers: dict[str, Any] = {}
    for layer in per_seed[0]["layers"]:
        blocks = [raw["layers"][layer] for raw in per_seed]
        correct = sum(b["correct"] for b in blocks)
        n = sum(b["n"] for b in blocks)
        shuffled = [c for b in blocks for c in b["shuffled_correct"]]
        n_shuffled = sum(b["n"] * len(b["shuffled_correct"]) for b in blocks)
        accuracy = wilson_interval(correct, n)
        baseline = wilson_interval(sum(shuffled), n_shuffled)
        at_least = sum(
            s >= b["correct"] for b in blocks for s in b["shuffled_correct"]
        )  # per seed: shuffled runs that match or beat that seed's probe
        layers[layer] = {
            "accuracy": accuracy,
            "shuffled_accuracy": baseline,
            "accuracy_over_shuffled": None
            if accuracy["value"] is None or baseline["value"] is None
            else accuracy["value"] - baseline["value"],
            "p_shuffled": (at_least + 1) / (len(shuffled) + 1),
        }
    return {"layers": layers, "n": per_seed[0]["n"], "n_synthetic": per_seed[0]["n_synthetic"]}
