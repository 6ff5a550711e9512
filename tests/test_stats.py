"""Bootstrap intervals, bits and paired differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alignpt.analysis.stats import (
    bootstrap_mean,
    bootstrap_ratio,
    item_bits,
    item_misaligned,
    paired_difference,
)


def test_bits_are_log2_odds_over_all_misaligned_choices():
    lps = [math.log(0.5), math.log(0.25), math.log(0.25)]
    assert item_bits(lps, [True, False, False]) == pytest.approx(0.0)
    assert item_bits(lps[:2], [True, False]) == pytest.approx(1.0)
    # unnormalised log-likelihoods give the same bits (normalised over the item's choices)
    assert item_bits([x - 7 for x in lps], [False, True, False]) == pytest.approx(
        math.log2(0.25 / 0.75)
    )


def test_misaligned_is_argmax_choice():
    assert item_misaligned([-1.0, -2.0], [True, False]) == 0.0
    assert item_misaligned([-3.0, -2.0, -9.0], [True, False, False]) == 1.0


def test_bootstrap_mean_interval_contains_value_and_is_deterministic():
    rng = np.random.default_rng(1)
    values = (rng.random(200) < 0.3).astype(float)
    first = bootstrap_mean(values, n_boot=500, seed=3)
    assert first == bootstrap_mean(values, n_boot=500, seed=3)
    assert first["ci_low"] < first["value"] < first["ci_high"]
    # normal-approximation width for a proportion: 2 * 1.96 * sqrt(p(1-p)/n) ~ 0.127
    assert first["ci_high"] - first["ci_low"] == pytest.approx(0.127, abs=0.03)


def test_bootstrap_over_seeds_is_wider_when_seeds_disagree():
    items = np.tile([0.0, 1.0], 50)
    agree = bootstrap_mean([items, items, items], n_boot=400)
    disagree = bootstrap_mean([items * 0.2, items, np.minimum(items + 0.6, 1)], n_boot=400)
    assert disagree["ci_high"] - disagree["ci_low"] > agree["ci_high"] - agree["ci_low"]


def test_paired_difference_excludes_zero_for_a_consistent_shift():
    rng = np.random.default_rng(0)
    base = rng.normal(size=100)
    diff = paired_difference(base - 0.5, base, n_boot=500)
    assert diff["value"] == pytest.approx(-0.5)
    assert diff["ci_high"] < 0
    # pairing: the unpaired spread of `base` (sd 1) does not widen the interval
    assert diff["ci_high"] - diff["ci_low"] < 1e-9 + 1e-6
    with pytest.raises(ValueError, match="same items"):
        paired_difference([1.0], [1.0, 2.0])


def test_ratio_bootstrap_perplexity():
    nll, tokens = [10.0, 20.0, 30.0], [10, 10, 10]
    iv = bootstrap_ratio(nll, tokens, transform=math.exp, n_boot=300)
    assert iv["value"] == pytest.approx(math.exp(2.0))
    assert iv["ci_low"] <= iv["value"] <= iv["ci_high"]


def test_empty_gives_null_interval():
    assert bootstrap_mean([]) == {"value": None, "ci_low": None, "ci_high": None}
