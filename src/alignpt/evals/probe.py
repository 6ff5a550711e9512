"""The ``probe`` suite: can a linear probe tell synthetic documents from organic ones?

Each text is one passage of ``max_tokens`` tokens or fewer. Its features at a layer are the
mean of that layer's hidden states over the passage (``output_hidden_states``: layer 0 is
the embeddings, layer L the last block's output). A scikit-learn pipeline (standardise, then
L2 logistic regression) is scored by cross-validation: ``StratifiedGroupKFold`` keeps every
passage of one group (one organic source file, one synthetic document) on one side of each
split, so the probe is always tested on held-out sources. The accuracy is the share of
held-out predictions that are right.

Two baselines, on the same folds:

* shuffled labels: the same probe refit on ``shuffles`` random permutations of the labels;
  its pooled accuracy is what the pipeline reaches with no signal, around 1/2;
* bag of words: TF-IDF of word unigrams and bigrams of exactly the text the model reads
  (the passage's first ``max_tokens`` - 1 tokens, decoded), then logistic regression. Mean-
  pooled layer-0 states are a linear map of the passage's token counts, so a probe that
  does no better than this baseline is reading vocabulary, not a representation the model
  built. ``layer_minus_bow`` is the probe's accuracy minus the baseline's on the same
  held-out documents, with a paired percentile bootstrap 95% CI over held-out documents
  (and seeds, resampled per side, when there are several).

Accuracy intervals: Wilson for one training seed; for several, a bootstrap over seeds and
held-out documents (``alignpt.analysis.stats.bootstrap_mean``). The shuffled baseline pools
its runs' trials in one Wilson interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from alignpt.analysis.stats import bootstrap_mean, paired_difference, wilson_interval
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


def passage_ids(tokenizer: Any, texts: Sequence[str], *, max_tokens: int) -> list[list[int]]:
    """Each text's token ids as the probe reads them (after the start token): the first
    ``max_tokens`` - 1."""
    return [
        ids[: max_tokens - 1]
        for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    ]


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
    encoded = [[start, *ids] for ids in passage_ids(tokenizer, texts, max_tokens=max_tokens)]
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
    features: Any,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    folds: int,
    seed: int,
    classifier: Any = None,
) -> np.ndarray:
    """Per text, whether ``classifier`` (default: standardise + logistic regression) trained
    on the other folds classifies it correctly."""
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    n_groups = min(len(set(groups[labels == k])) for k in (0, 1))
    splitter = StratifiedGroupKFold(n_splits=min(folds, n_groups), shuffle=True, random_state=seed)
    probe = classifier if classifier is not None else linear_probe()
    predicted = cross_val_predict(probe, features, labels, groups=groups, cv=splitter)
    return predicted == labels


def linear_probe() -> Any:
    """The probe on hidden states: standardise, then L2 logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def bag_of_words() -> Any:
    """The vocabulary baseline: TF-IDF of word unigrams and bigrams, logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=2000)
    )


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
    seen = np.asarray(
        tokenizer.batch_decode(
            passage_ids(tokenizer, synthetic + organic, max_tokens=options.max_tokens),
            skip_special_tokens=True,
        ),
        dtype=object,
    )
    bow = cross_validated_correct(
        seen, labels, groups, folds=options.folds, seed=options.seed, classifier=bag_of_words()
    )
    out: dict[str, Any] = {
        "n": len(labels),
        "n_synthetic": len(synthetic),
        "bow": {"correct": int(bow.sum()), "n": int(bow.size), "items": bow.astype(int).tolist()},
        "layers": {},
    }
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
            "items": correct.astype(int).tolist(),
            "shuffled_correct": [int(s.sum()) for s in shuffled],
        }
    return out


def _accuracy(blocks: Sequence[dict], n_boot: int, seed: int) -> dict:
    """Wilson for one seed (or without per-document results), else a seeds x documents
    bootstrap."""
    if len(blocks) > 1 and all("items" in b for b in blocks):
        matrix = np.asarray([b["items"] for b in blocks], dtype=float)
        return {
            **bootstrap_mean(matrix, n_boot=n_boot, seed=seed),
            "n": int(matrix.size),
            "method": "bootstrap_seeds_documents",
        }
    return {
        **wilson_interval(sum(b["correct"] for b in blocks), sum(b["n"] for b in blocks)),
        "method": "wilson",
    }


def summarize_probe(
    per_seed: Sequence[dict[str, Any]], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Per layer: probe accuracy, shuffled-label accuracy (Wilson, trials pooled over seeds
    and shuffles), their difference, ``p_shuffled`` (the share of shuffled runs at least as
    accurate as the probe, +1 smoothed: a permutation-test p-value), and, with the
    bag-of-words baseline, ``layer_minus_bow`` (paired bootstrap over held-out documents).
    The baseline's own accuracy is ``bow_accuracy`` at the top level."""
    layers: dict[str, Any] = {}
    bows = [raw["bow"] for raw in per_seed if "bow" in raw]
    bow_matrix = (
        np.asarray([b["items"] for b in bows], dtype=float) if len(bows) == len(per_seed) else None
    )
    for layer in per_seed[0]["layers"]:
        blocks = [raw["layers"][layer] for raw in per_seed]
        shuffled = [c for b in blocks for c in b["shuffled_correct"]]
        n_shuffled = sum(b["n"] * len(b["shuffled_correct"]) for b in blocks)
        accuracy = _accuracy(blocks, n_boot, seed)
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
        if bow_matrix is not None and all("items" in b for b in blocks):
            matrix = np.asarray([b["items"] for b in blocks], dtype=float)
            layers[layer]["layer_minus_bow"] = {
                **paired_difference(matrix, bow_matrix, n_boot=n_boot, seed=seed),
                "method": "paired_bootstrap_documents",
            }
    out = {"layers": layers, "n": per_seed[0]["n"], "n_synthetic": per_seed[0]["n_synthetic"]}
    if bow_matrix is not None:
        out["bow_accuracy"] = _accuracy(bows, n_boot, seed)
    return out
