"""How much of the pretraining effect survives: retained-gap share and steps-to-rate.

- ``retained_gap_share``: the share of the base-model gap between two conditions that remains
  after a post-training stage, (post_b − post_a) / (base_b − base_a), with a 95% bootstrap
  interval (scipy.stats.bootstrap, resampling eval items jointly when all four score lists
  are over the same items).
- ``steps_to_rate``: the adversarial steps a model needs before its misalignment rate
  reaches a threshold, read off an ``AdversarialCurve`` with linear interpolation between
  schedule points; the interval comes from where the curve's upper and lower 95% bands
  cross the threshold.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from alignpt.posttrain.adversarial import AdversarialCurve


def _gap_share(base_a: Any, base_b: Any, post_a: Any, post_b: Any, axis: int = -1) -> Any:
    base_gap = np.mean(base_b, axis=axis) - np.mean(base_a, axis=axis)
    post_gap = np.mean(post_b, axis=axis) - np.mean(post_a, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return post_gap / base_gap


def retained_gap_share(
    base_a: Sequence[float],
    base_b: Sequence[float],
    post_a: Sequence[float],
    post_b: Sequence[float],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Share of the base gap (condition b − condition a) that remains after post-training.

    Inputs are per-item scores (e.g. 1/0 misaligned outcomes, or bits) of condition a and b
    before (``base_*``) and after (``post_*``) a stage. 1 = the whole gap persists, 0 = none.
    Returns ``{"value", "ci_low", "ci_high", "base_gap", "post_gap", "paired",
    "base_gap_significant"}``. ``value`` is None when the base gap is zero; the interval is
    None (unbounded) when the base gap's own interval contains zero.
    """
    arrays = [np.asarray(x, dtype=float) for x in (base_a, base_b, post_a, post_b)]
    if any(len(a) == 0 for a in arrays):
        raise ValueError("retained_gap_share needs at least one score per condition and stage")
    paired = len({len(a) for a in arrays}) == 1
    kwargs: dict[str, Any] = {
        "n_resamples": n_resamples,
        "method": "percentile",
        "confidence_level": confidence,
        "vectorized": True,
        "paired": paired,
        "rng": np.random.default_rng(seed),
    }
    base_gap = _diff_with_ci(arrays[0], arrays[1], kwargs)
    post_gap = _diff_with_ci(arrays[2], arrays[3], kwargs)
    significant = not (base_gap["ci_low"] <= 0.0 <= base_gap["ci_high"])
    value = None if base_gap["value"] == 0 else post_gap["value"] / base_gap["value"]
    low = high = None
    if significant:  # otherwise the ratio's interval is unbounded
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore")
            ci = stats.bootstrap(tuple(arrays), _gap_share, **kwargs).confidence_interval
        low, high = float(ci.low), float(ci.high)
    return {
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "base_gap": base_gap,
        "post_gap": post_gap,
        "paired": paired,
        "base_gap_significant": significant,
    }


def _diff_with_ci(a: np.ndarray, b: np.ndarray, kwargs: dict[str, Any]) -> dict[str, float]:
    """mean(b) − mean(a) with its bootstrap interval (a point interval if data are constant)."""
    value = float(b.mean() - a.mean())
    if np.ptp(np.concatenate([a, b])) == 0:
        return {"value": value, "ci_low": value, "ci_high": value}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = stats.bootstrap(
            (a, b),
            lambda x, y, axis=-1: np.mean(y, axis=axis) - np.mean(x, axis=axis),
            **kwargs,
        ).confidence_interval
    return {"value": value, "ci_low": float(ci.low), "ci_high": float(ci.high)}


def retained_gap_table(
    scores: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    low: str,
    high: str,
    base_stage: str = "base",
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """``retained_gap_share`` for every stage after ``base_stage``.

    ``scores[stage][condition]`` holds per-item scores; ``low`` / ``high`` name the two
    conditions whose gap is followed (e.g. the alignment-upsampled and unfiltered ones).
    """
    base = scores[base_stage]
    return {
        stage: retained_gap_share(base[low], base[high], by_cond[low], by_cond[high], **kwargs)
        for stage, by_cond in scores.items()
        if stage != base_stage
    }


def _first_crossing(steps: Sequence[int], values: Sequence[float], rate: float) -> float | None:
    """The (interpolated) first step at which ``values`` reach ``rate``; None if never."""
    for i, (step, value) in enumerate(zip(steps, values, strict=True)):
        if value >= rate:
            if i == 0:
                return float(step)
            prev_step, prev_value = steps[i - 1], values[i - 1]
            fraction = (rate - prev_value) / (value - prev_value)
            return float(prev_step + fraction * (step - prev_step))
    return None


def steps_to_rate(curve: AdversarialCurve, rate: float) -> dict[str, Any]:
    """Adversarial steps until the misalignment rate reaches ``rate``, with an interval.

    ``value`` follows the point estimates; ``ci_low`` is where the upper band first reaches
    ``rate`` (the earliest plausible), ``ci_high`` where the lower band does (None if it never
    does within the schedule: right-censored, ``"censored": True``).
    """
    steps = [p.step for p in curve.points]
    value = _first_crossing(steps, [p.value for p in curve.points], rate)
    early = _first_crossing(steps, [p.ci_high for p in curve.points], rate)
    late = _first_crossing(steps, [p.ci_low for p in curve.points], rate)
    return {
        "value": value,
        "ci_low": early,
        "ci_high": late,
        "rate": rate,
        "censored": value is None,
        "max_step": steps[-1] if steps else None,
    }
