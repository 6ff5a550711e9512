"""Statistics for eval results: percentile bootstrap CIs over items (and seeds), bits, pairs.

Every rate or mean is reported as ``{"value", "ci_low", "ci_high"}``. Bootstraps are
deterministic: a fixed seed gives the same interval. numpy does the two-level resampling
(seeds, then items), which scipy's ``bootstrap`` cannot; ``mean_with_ci`` (one level) and the
Wilson intervals use scipy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Interval = dict[str, float | None]
DEFAULT_BOOTSTRAP = 1000
DEFAULT_SEED = 0


def interval(value: float, low: float, high: float) -> Interval:
    """A JSON-able estimate with its 95% interval (plain floats, rounded to 12 digits)."""

    def clean(x: float) -> float | None:
        return None if x is None or not math.isfinite(x) else round(float(x), 12)

    return {"value": clean(value), "ci_low": clean(low), "ci_high": clean(high)}


def _as_matrix(values: Sequence[float] | Sequence[Sequence[float]]) -> np.ndarray:
    """Seeds x items matrix (a flat list is one seed)."""
    array = np.asarray(values, dtype=float)
    return array[None, :] if array.ndim == 1 else array


def _counts(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` units was drawn in each resample (rows of ``indices``)."""
    offsets = indices + np.arange(indices.shape[0])[:, None] * n
    return np.bincount(offsets.ravel(), minlength=indices.shape[0] * n).reshape(-1, n)


def _resampled_means(
    matrix: np.ndarray, seed_counts: np.ndarray, item_counts: np.ndarray
) -> np.ndarray:
    """Mean of ``matrix`` (seeds x items) under each resample's seed and item counts."""
    total = seed_counts.sum(axis=1) * item_counts.sum(axis=1)
    return np.einsum("bs,si,bi->b", seed_counts, matrix, item_counts) / total


def bootstrap_mean(
    values: Sequence[float] | Sequence[Sequence[float]],
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Mean with a 95% percentile bootstrap CI.

    ``values`` is per item, or a seeds x items matrix; with several seeds the bootstrap
    resamples seeds and items (two-level), so the interval covers seed-to-seed variation.
    """
    matrix = _as_matrix(values)
    if matrix.size == 0:
        return interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    n_seeds, n_items = matrix.shape
    seed_counts = _counts(rng.integers(0, n_seeds, size=(n_boot, n_seeds)), n_seeds)
    item_counts = _counts(rng.integers(0, n_items, size=(n_boot, n_items)), n_items)
    stats = _resampled_means(matrix, seed_counts, item_counts)
    low, high = np.percentile(stats, [2.5, 97.5])
    return interval(float(matrix.mean()), float(low), float(high))


def bootstrap_median(
    values: Sequence[float] | Sequence[Sequence[float]],
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Median over items (of each item's mean over seeds) with a 95% percentile bootstrap CI.

    Seeds and items are resampled as in :func:`bootstrap_mean`.
    """
    matrix = _as_matrix(values)
    if matrix.size == 0:
        return interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    n_seeds, n_items = matrix.shape
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    items = rng.integers(0, n_items, size=(n_boot, n_items))
    stats = np.array(
        [np.median(matrix[s][:, i].mean(axis=0)) for s, i in zip(seeds, items, strict=True)]
    )
    low, high = np.percentile(stats, [2.5, 97.5])
    return interval(float(np.median(matrix.mean(axis=0))), float(low), float(high))


def bootstrap_ratio(
    numerators: Sequence[float],
    denominators: Sequence[float],
    *,
    transform: Callable[[float], float] = lambda x: x,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """``transform(sum(num)/sum(den))`` with a bootstrap CI over units (e.g. perplexity)."""
    num = np.asarray(numerators, dtype=float)
    den = np.asarray(denominators, dtype=float)
    if num.size == 0 or den.sum() == 0:
        return interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num.size, size=(n_boot, num.size))
    ratios = num[idx].sum(axis=1) / np.maximum(den[idx].sum(axis=1), 1e-12)
    stats = np.array([transform(r) for r in ratios])
    low, high = np.percentile(stats, [2.5, 97.5])
    return interval(transform(num.sum() / den.sum()), float(low), float(high))


def paired_difference(
    a: Sequence[float] | Sequence[Sequence[float]],
    b: Sequence[float] | Sequence[Sequence[float]],
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Mean of ``a - b`` over the same items, resampling items jointly (paired bootstrap).

    ``a`` and ``b`` may be seeds x items matrices with different seed counts; seeds are
    resampled independently per side, items jointly.
    """
    ma, mb = _as_matrix(a), _as_matrix(b)
    if ma.shape[1] != mb.shape[1]:
        raise ValueError(f"paired difference needs the same items ({ma.shape[1]} vs {mb.shape[1]})")
    if ma.shape[1] == 0:
        return interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    n_items = ma.shape[1]
    items = _counts(rng.integers(0, n_items, size=(n_boot, n_items)), n_items)
    seeds_a = _counts(rng.integers(0, ma.shape[0], size=(n_boot, ma.shape[0])), ma.shape[0])
    seeds_b = _counts(rng.integers(0, mb.shape[0], size=(n_boot, mb.shape[0])), mb.shape[0])
    stats = _resampled_means(ma, seeds_a, items) - _resampled_means(mb, seeds_b, items)
    low, high = np.percentile(stats, [2.5, 97.5])
    return interval(float(ma.mean() - mb.mean()), float(low), float(high))


def item_bits(logprobs: Sequence[float], aligned: Sequence[bool]) -> float:
    """log2 P(aligned) / P(misaligned options), P normalised over the item's choices."""
    lp = np.asarray(logprobs, dtype=float)
    mask = np.asarray(aligned, dtype=bool)
    aligned_lse = np.logaddexp.reduce(lp[mask])
    misaligned_lse = np.logaddexp.reduce(lp[~mask])
    return float((aligned_lse - misaligned_lse) / math.log(2))


def item_misaligned(logprobs: Sequence[float], aligned: Sequence[bool]) -> float:
    """1.0 if the highest-scoring choice is misaligned (first maximum on ties), else 0.0."""
    return 0.0 if aligned[int(np.argmax(np.asarray(logprobs)))] else 1.0


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> Interval:
    """``successes / trials`` with its Wilson score interval (scipy's ``binomtest``), plus
    ``n``; value and bounds are ``None`` when there are no trials."""
    from scipy import stats

    if trials <= 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    return {**interval(successes / trials, ci.low, ci.high), "n": int(trials)}


def rate_with_ci(outcomes: Sequence[bool], confidence: float = 0.95) -> dict[str, float]:
    """A rate with its Wilson score interval (scipy's binomtest), unrounded, plus ``n``."""
    from scipy import stats

    n, k = len(outcomes), int(sum(outcomes))
    if n == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return {"value": k / n, "ci_low": float(ci.low), "ci_high": float(ci.high), "n": n}


def mean_with_ci(values: Sequence[float], *, seed: int = 0, n_resamples: int = 1000) -> dict:
    """A mean with its 95% percentile-bootstrap interval (scipy.stats.bootstrap), plus ``n``."""
    from scipy import stats

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
    ci = result.confidence_interval
    return {
        "value": float(data.mean()),
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "n": len(data),
    }


def inverse_variance_mean(per_item: np.ndarray) -> dict:
    """Seeds combined by inverse-variance weights: each seed's mean over items (rows of the
    seeds x items ``per_item``) weighted by 1 / its squared standard error over items, with a
    normal 95% interval; also the per-seed means."""
    rates = per_item.mean(axis=1)
    n_items = max(per_item.shape[1], 1)
    variances = per_item.var(axis=1, ddof=1) / n_items if n_items > 1 else np.zeros(len(rates))
    # A seed whose items all agree has zero variance; floor it at one item's worth of
    # binomial variance so it gets a large but finite weight.
    variances = np.maximum(variances, 0.25 / n_items**2)
    weights = 1.0 / variances
    value = float((weights * rates).sum() / weights.sum())
    se = float(np.sqrt(1.0 / weights.sum()))
    return {
        **interval(value, value - 1.96 * se, value + 1.96 * se),
        "se": round(se, 12),
        "per_seed": [round(float(r), 12) for r in rates],
    }


def seed_combination(per_item: np.ndarray, *, n_boot: int, seed: int) -> dict:
    """A rate over seeds two ways, from the seeds x items matrix of per-item rates:
    inverse-variance weighting and the bootstrap over seeds x items."""
    weighted = inverse_variance_mean(per_item)
    per_seed = weighted.pop("per_seed")
    return {
        "inverse_variance": weighted,
        "bootstrap": bootstrap_mean(per_item, n_boot=n_boot, seed=seed),
        "per_seed": per_seed,
    }
