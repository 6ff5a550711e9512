"""How well the detectors find AI discourse: precision, recall and F1 with 95% intervals.

Each detector (blocklist, classifier, both, either) gives one verdict per labelled text.
Precision, recall and F1 get percentile-bootstrap intervals over texts (seeded, so the same
set gives the same numbers); removal rates on an unlabelled neutral corpus get Wilson
intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from alignpt.analysis.stats import interval
from alignpt.config import CurateSpec

from .blocklist import Blocklist
from .classifier import load_classifier

DETECTORS = ("blocklist", "classifier", "both", "either")


def verdicts(texts: Sequence[str], spec: CurateSpec) -> dict[str, np.ndarray]:
    """Per detector, a boolean per text: flagged as AI discourse."""
    blocklist = Blocklist.from_spec(spec.blocklist)
    blocked = np.array([blocklist.match(t).flagged for t in texts], dtype=bool)
    classifier = load_classifier(spec.classifier.path)
    scores = classifier.score(list(texts))
    learned = np.array([s.ai_discourse >= spec.classifier.threshold for s in scores], dtype=bool)
    return {
        "blocklist": blocked,
        "classifier": learned,
        "both": blocked & learned,
        "either": blocked | learned,
    }


def _prf(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float, float]:
    tp = float(np.sum(truth & predicted))
    precision = tp / max(1.0, float(predicted.sum())) if predicted.any() else float("nan")
    recall = tp / float(truth.sum()) if truth.any() else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def detection_metrics(
    truth: Sequence[bool], predicted: Sequence[bool], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Counts, and precision / recall / F1 with 95% percentile-bootstrap intervals."""
    truth_a = np.asarray(truth, dtype=bool)
    pred_a = np.asarray(predicted, dtype=bool)
    point = _prf(truth_a, pred_a)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(truth_a), size=(n_boot, len(truth_a)))
    resampled = np.array([_prf(truth_a[d], pred_a[d]) for d in draws])
    out: dict[str, Any] = {
        "n": len(truth_a),
        "tp": int(np.sum(truth_a & pred_a)),
        "fp": int(np.sum(~truth_a & pred_a)),
        "fn": int(np.sum(truth_a & ~pred_a)),
        "tn": int(np.sum(~truth_a & ~pred_a)),
    }
    for index, name in enumerate(("precision", "recall", "f1")):
        column = resampled[:, index]
        column = column[np.isfinite(column)]
        low, high = np.percentile(column, [2.5, 97.5]) if len(column) else (np.nan, np.nan)
        out[name] = interval(point[index], low, high)
    return out


def removal_rate(flags: Sequence[bool]) -> dict[str, Any]:
    """Share of a corpus a detector flags, with a 95% Wilson interval."""
    from scipy.stats import binomtest

    n, k = len(flags), int(np.sum(flags))
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"n": n, "flagged": k, "rate": interval(k / n, ci.low, ci.high)}


def detector_report(
    texts: Sequence[str],
    truth: Sequence[bool],
    neutral: dict[str, Sequence[str]],
    spec: CurateSpec | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics per detector on a labelled set, and removal rates on neutral corpora."""
    spec = spec or CurateSpec()
    labelled = verdicts(texts, spec)
    report: dict[str, Any] = {
        "labelled": {
            name: detection_metrics(truth, flags, n_boot=n_boot, seed=seed)
            for name, flags in labelled.items()
        },
        "neutral": {},
    }
    for corpus, corpus_texts in neutral.items():
        flags = verdicts(corpus_texts, spec)
        report["neutral"][corpus] = {name: removal_rate(flags[name]) for name in DETECTORS}
    return report
