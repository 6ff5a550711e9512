"""Bootstrap over two crossed factors (e.g. prompt formats x items), with missing cells.

``alignpt.analysis.stats.bootstrap_mean`` resamples a complete seeds x items matrix; a
format x item grid can have holes (an item with two options has no third answer order), so
this resamples rows and columns jointly and averages only the cells present.
"""

from __future__ import annotations

import numpy as np

from alignpt.analysis.stats import DEFAULT_BOOTSTRAP, DEFAULT_SEED, Interval, _counts, interval


def crossed_bootstrap_mean(
    values: np.ndarray, *, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED
) -> Interval:
    """Mean of the non-NaN cells of a rows x columns matrix, with a 95% percentile interval
    from resampling rows and columns independently (each resample averages the cells its
    drawn rows and columns cover)."""
    matrix = np.asarray(values, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"expected a rows x columns matrix, got shape {matrix.shape}")
    present = ~np.isnan(matrix)
    if not present.any():
        return interval(float("nan"), float("nan"), float("nan"))
    filled = np.where(present, matrix, 0.0)
    rng = np.random.default_rng(seed)
    n_rows, n_cols = matrix.shape
    rows = _counts(rng.integers(0, n_rows, size=(n_boot, n_rows)), n_rows)
    cols = _counts(rng.integers(0, n_cols, size=(n_boot, n_cols)), n_cols)
    totals = np.einsum("br,rc,bc->b", rows, filled, cols)
    weights = np.einsum("br,rc,bc->b", rows, present.astype(float), cols)
    stats = totals[weights > 0] / weights[weights > 0]
    low, high = np.percentile(stats, [2.5, 97.5])
    return interval(float(filled.sum() / present.sum()), float(low), float(high))


def standard_error(values: np.ndarray) -> float | None:
    """Standard error of the mean of ``values`` (NaNs dropped); None below two values."""
    kept = np.asarray(values, dtype=float)
    kept = kept[~np.isnan(kept)]
    if kept.size < 2:
        return None
    return round(float(kept.std(ddof=1) / np.sqrt(kept.size)), 12)
