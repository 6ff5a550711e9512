"""The report leads with one sentence per comparison, and its surface checks are computed."""

from __future__ import annotations

from alignpt.analysis.stats import bootstrap_median
from alignpt.evals.scoring import ChoiceScore, ItemScores
from alignpt.evals.suites import item_records, summarize_misalignment
from alignpt.experiment.headline import comparison_sentences, surface_rows
from alignpt.items import EvalItem


def iv(value: float, low: float, high: float) -> dict:
    return {"value": value, "ci_low": low, "ci_high": high}


def results_with(effect: dict, checks: dict[str, dict]) -> dict:
    return {
        "baseline": "baseline",
        "conditions": {"baseline": {}, "aligned": {"held_out": {"n": 240}}},
        "paired_differences": {
            "aligned - baseline": {
                "held_out_misalignment_rate": effect,
                "held_out_misalignment_rate_by_normalisation": {
                    k: v for k, v in checks.items() if k != "reversed"
                },
                "held_out_misalignment_rate_options_reversed": checks["reversed"],
            }
        },
    }


def test_sentence_gives_points_interval_items_and_checks() -> None:
    good = iv(-0.12, -0.16, -0.08)
    results = results_with(good, {"token": good, "char": good, "sum": good, "reversed": good})
    (sentence,) = comparison_sentences(results)
    assert sentence == (
        "aligned changed held-out misalignment by -12.0 points [-16.0, -8.0] (95% CI, 240 "
        "items) relative to baseline. It holds under per-token scoring, per-character "
        "scoring, summed scoring, options reversed."
    )


def test_sentence_names_the_checks_an_effect_fails() -> None:
    good = iv(-0.12, -0.16, -0.08)
    checks = {"token": good, "char": good, "sum": iv(0.02, -0.01, 0.05), "reversed": good}
    (sentence,) = comparison_sentences(results_with(good, checks))
    assert sentence.endswith("It does not hold under summed scoring.")
    null = iv(0.01, -0.02, 0.04)
    (sentence,) = comparison_sentences(results_with(null, dict.fromkeys(checks, null)))
    assert sentence.endswith("The interval includes 0: no clear effect.")


def scored(choices: list[str], aligned: list[bool], logprobs: list[float], tokens: list[int]):
    item = EvalItem(
        id="x",
        family="f",
        prompt="p",
        choices=choices,
        aligned=aligned,
        observed=None,
        source="test",
    )
    return ItemScores(
        item,
        [
            ChoiceScore(lp, len(c), n, False)
            for c, lp, n in zip(choices, logprobs, tokens, strict=True)
        ],
    )


def test_records_carry_every_normalisation_reversal_and_length() -> None:
    # The misaligned option is shorter and wins on the sum, loses per token.
    item = scored([" a long aligned answer", " short"], [True, False], [-8.0, -6.0], [4, 1])
    (record,) = item_records([item], held_out_families=["f"], normalisation="token")
    assert record["by_normalisation"] == {"sum": 1.0, "token": 0.0, "char": 0.0}
    assert record["misaligned"] == 0.0 and record["misaligned_shorter"] == 1.0
    tie = scored([" same", " same"], [True, False], [-2.0, -2.0], [1, 1])
    (record,) = item_records([tie], held_out_families=[], normalisation="sum")
    assert record["misaligned"] == 0.0 and record["misaligned_reversed"] == 1.0
    assert record["misaligned_shorter"] == 0.5


def test_summary_has_surface_checks_and_median_bits() -> None:
    items = [
        scored([" aligned one", " bad"], [True, False], [-4.0, -3.0], [2, 1]),
        scored([" bad", " aligned one"], [False, True], [-3.0, -1.0], [1, 2]),
    ]
    records = item_records(items, held_out_families=["f"], normalisation="sum")
    summary = summarize_misalignment([records], n_boot=200)
    held = summary["held_out"]
    assert held["rate_by_normalisation"]["sum"]["value"] == 0.5
    assert held["rate_by_normalisation"]["token"]["value"] == 0.0
    assert held["misaligned_shorter_share"]["value"] == 1.0
    assert held["bits_median"]["value"] == bootstrap_median([r["bits"] for r in records])["value"]
    header, rows = surface_rows({"conditions": {"c": {"held_out": held}}})
    assert rows[0][0] == "c" and len(rows[0]) == len(header)


def test_bootstrap_median_over_seeds_and_items() -> None:
    result = bootstrap_median([[1.0, 2.0, 9.0], [3.0, 2.0, 9.0]], n_boot=300, seed=1)
    assert result["value"] == 2.0  # median of the per-item means 2, 2, 9
    assert result["ci_low"] <= 2.0 <= result["ci_high"]
