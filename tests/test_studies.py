"""Studies in `alignpt run`: post-training persistence end to end, study plots, study configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM

from alignpt.config import ConfigError, ExperimentConfig, load_experiment, parse_model
from alignpt.experiment.runner import run_experiment
from alignpt.experiment.studies import pooled_summary, retained_gaps, study_section, study_x
from alignpt.experiment.studies_report import study_html, study_plots
from tiny_experiment import tiny_experiment

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
INTERVAL = {"value", "ci_low", "ci_high"}


def tiny_data(runs_dir: Path) -> dict:
    """Two conditions, ~30k-parameter models, a few post-training examples."""
    data = tiny_experiment(runs_dir, name="tiny-persistence", seq_len=128)
    data["evals"].update(
        items_per_family=4, suites=["misalignment"], generation={"max_new_tokens": 4}
    )
    return {
        **data,
        "posttrain": {
            "sft": {"n": 16, "epochs": 1, "batch_size": 8, "max_length": 128},
            "dpo": {"n": 16, "batch_size": 8, "max_length": 128},
            "adversarial": {"n": 16, "batch_size": 8, "max_length": 128, "steps": [0, 2, 4]},
        },
        "study": {"kind": "persistence"},
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    runs = tmp_path_factory.mktemp("runs")
    config = parse_model(ExperimentConfig, tiny_data(runs), "tiny.yaml")
    return runs, run_experiment(config, progress=False)


def test_persistence_results_have_retained_gap_shares_with_intervals(finished) -> None:
    _, outcome = finished
    results = json.loads(outcome.report.with_name("results.json").read_text())
    persistence = results["persistence"]
    assert persistence["stages"] == ["base", "sft", "dpo"]
    for condition in ("baseline", "aligned"):
        for stage in persistence["stages"]:
            for prompt in ("none", "hhh"):
                block = persistence["conditions"][condition][stage][prompt]
                assert set(block["misalignment_rate"]) >= INTERVAL
                assert set(block["bits"]) >= INTERVAL
                rate = block["misalignment_rate"]
                assert rate["ci_low"] <= rate["value"] <= rate["ci_high"]
    for prompt in ("none", "hhh"):
        tables = persistence["retained_gap_share"][prompt]["aligned vs baseline"]
        for metric in ("misalignment_rate", "bits"):
            assert set(tables[metric]) == {"sft", "dpo"}  # after SFT and after SFT+DPO
            for share in tables[metric].values():
                assert set(share) >= INTERVAL
                assert set(share["base_gap"]) >= INTERVAL
                # The share's interval is unbounded (None) exactly when the base gap's
                # own interval contains zero.
                assert (share["ci_low"] is None) == (not share["base_gap_significant"])
                if share["ci_low"] is not None:
                    assert share["ci_low"] <= share["ci_high"]


def test_stickiness_curves_and_steps_to_rate(finished) -> None:
    _, outcome = finished
    stickiness = json.loads(outcome.report.with_name("results.json").read_text())["stickiness"]
    for block in stickiness["conditions"].values():
        assert [p["step"] for p in block["points"]] == [0, 2, 4]
        for point in block["points"]:
            assert point["ci_low"] <= point["value"] <= point["ci_high"]
        assert block["steps_to_rate"]["rate"] == stickiness["threshold"]


def test_report_shows_persistence_and_stickiness(finished) -> None:
    _, outcome = finished
    page = outcome.report.read_text()
    for name in ("persistence.png", "stickiness.png"):
        assert (outcome.report.parent / name).stat().st_size > 5000
        assert f'src="{name}"' in page
    assert 'id="persistence"' in page and 'id="retained_gap"' in page
    assert 'id="stickiness"' in page


def test_results_csv_holds_persistence_and_stickiness(finished) -> None:
    import csv

    _, outcome = finished
    results = json.loads(outcome.report.with_name("results.json").read_text())
    with outcome.report.with_name("results.csv").open(encoding="utf-8") as handle:
        rows = {(r["condition"], r["metric"], r["split"]): r for r in csv.DictReader(handle)}
    persistence = results["persistence"]["conditions"]["aligned"]["dpo"]["hhh"]
    row = rows[("aligned", "persistence_misalignment_rate", "dpo:hhh")]
    assert float(row["value"]) == persistence["misalignment_rate"]["value"]
    assert float(row["ci_low"]) == persistence["misalignment_rate"]["ci_low"]
    assert ("aligned vs baseline", "retained_gap_share_bits", "sft:none") in rows
    point = results["stickiness"]["conditions"]["baseline"]["points"][-1]
    row = rows[("baseline", "stickiness_misalignment_rate", f"step:{point['step']}")]
    assert float(row["ci_high"]) == point["ci_high"]
    assert any(metric == "steps_to_rate" for _, metric, _ in rows)


def test_generation_scoring_per_stage_with_parse_failures_and_exclusions(finished) -> None:
    import csv

    _, outcome = finished
    results = json.loads(outcome.report.with_name("results.json").read_text())
    generation = results["persistence"]["generation"]
    assert (generation["max_new_tokens"], generation["max_parse_failure"]) == (4, 0.2)
    for condition in ("baseline", "aligned"):
        for stage in ("base", "sft", "dpo"):
            for prompt in ("none", "hhh"):
                block = generation["conditions"][condition][stage][prompt]
                failed = block["parse_failure_rate"]
                assert failed["ci_low"] <= failed["value"] <= failed["ci_high"]
                assert failed["n"] == 2 * results["persistence"]["eval_items"]  # two orders
                run = block["runs"]["seed0"]
                assert run["flagged"] == (failed["value"] > 0.2)
                assert block["excluded"] == (["seed0"] if run["flagged"] else [])
                if run["flagged"]:
                    assert block["misalignment_rate"]["value"] is None
    with outcome.report.with_name("results.csv").open(encoding="utf-8") as handle:
        rows = {(r["condition"], r["metric"], r["split"]) for r in csv.DictReader(handle)}
    assert ("aligned", "generation_parse_failure_rate", "dpo:hhh") in rows
    page = outcome.report.read_text()
    assert 'id="generation"' in page and "unparsable" in page


def test_posttrained_models_load_and_record_their_parent(finished) -> None:
    runs, _ = finished
    dpo = runs / "tiny-persistence" / "posttrain" / "aligned" / "seed0" / "dpo"
    AutoModelForCausalLM.from_pretrained(dpo)
    record = json.loads((dpo / "alignpt.json").read_text())
    assert record["phase"] == "dpo"
    assert record["parent_model"].endswith("sft")
    assert record["posttrain_data_hash"]
    base = json.loads((dpo.parent / "sft" / "alignpt.json").read_text())
    assert base["condition"] == "aligned"
    card = (dpo / "README.md").read_text()  # the model card names stage and parent
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "transformers" and front["model-index"][0]["results"]
    assert "| post-training | dpo |" in card and f"`{record['parent_model']}`" in card


def test_rerun_reuses_post_training_and_evaluations(finished) -> None:
    runs, outcome = finished
    before = outcome.report.with_name("results.json").read_bytes()
    evaluated = runs / "tiny-persistence" / "persistence" / "aligned" / "seed0" / "dpo-hhh"
    stamp = (evaluated / "result.json").stat().st_mtime_ns
    config = parse_model(ExperimentConfig, tiny_data(runs), "tiny.yaml")
    again = run_experiment(config, progress=False)
    assert (evaluated / "result.json").stat().st_mtime_ns == stamp
    assert again.report.with_name("results.json").read_bytes() == before


def _evaluation(outcomes: list[int], shift: float) -> dict:
    """An ``evaluate_chat_model``-shaped result: per-item outcomes and bits."""
    return {
        "per_item": [bool(x) for x in outcomes],
        "per_item_bits": [shift + (0.5 - x) + 0.01 * i for i, x in enumerate(outcomes)],
    }


def test_retained_gaps_pool_seeds_and_give_finite_intervals_for_a_clear_gap() -> None:
    n = 60

    # Base: the baseline prefers the misaligned option on 80% of items, the aligned
    # condition on 20%; after SFT the gap shrinks to a third (60% vs 40%); two seeds each.
    def outcomes(share: float) -> list[int]:
        return [int(i < share * n) for i in range(n)]

    evaluations = {
        condition: {
            stage: {
                "none": [_evaluation(outcomes(share), bits), _evaluation(outcomes(share), bits)]
            }
            for stage, share, bits in stages
        }
        for condition, stages in {
            "baseline": [("base", 0.8, 0.0), ("sft", 0.6, 0.0)],
            "aligned": [("base", 0.2, 2.0), ("sft", 0.4, 1.0)],
        }.items()
    }
    table = retained_gaps(evaluations, baseline="baseline", stages=["base", "sft"], seed=0)
    share = table["none"]["aligned vs baseline"]["misalignment_rate"]["sft"]
    assert share["value"] == pytest.approx(0.2 / 0.6)
    assert share["base_gap_significant"] and share["paired"]
    assert share["ci_low"] < share["value"] < share["ci_high"]
    bits = table["none"]["aligned vs baseline"]["bits"]["sft"]
    # mean bits: baseline -0.3 → -0.1, aligned 2.3 → 1.1 (plus the same item offsets)
    assert bits["value"] == pytest.approx(1.2 / 2.6)
    assert bits["ci_low"] <= bits["value"] <= bits["ci_high"]
    pooled = pooled_summary(evaluations["baseline"]["base"]["none"])
    assert pooled["misalignment_rate"]["n"] == 2 * n and pooled["seeds"] == 2
    assert pooled["misalignment_rate"]["value"] == pytest.approx(0.8)


def _interval(value: float) -> dict:
    return {"value": value, "ci_low": value - 0.1, "ci_high": value + 0.1}


@pytest.mark.parametrize("kind", ["dose", "placement", "disclosure"])
def test_study_plot_for_each_kind(kind: str, tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    data["study"] = {"kind": kind}
    config = parse_model(ExperimentConfig, data, "x.yaml")
    results = {
        "conditions": {
            "baseline": {"held_out": {"misalignment_rate": _interval(0.5), "bits": _interval(0)}},
            "aligned": {"held_out": {"misalignment_rate": _interval(0.3), "bits": _interval(1)}},
        }
    }
    study = study_section(config, results)["study"]
    assert [p["split"] for p in study["points"]] == ["held_out", "held_out"]
    plots = study_plots(study_section(config, results), tmp_path)
    assert plots == [(f"study_{kind}.png", plots[0][1])]
    assert (tmp_path / f"study_{kind}.png").stat().st_size > 5000
    assert study_html({"study": study}) == ""  # the study's numbers are in the plot only


def test_study_x_defaults_from_sources(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    data["study"] = {"kind": "dose"}
    config = parse_model(ExperimentConfig, data, "x.yaml")
    assert study_x(config, "baseline") == 0.0 and study_x(config, "aligned") == 0.3
    data["study"] = {"kind": "placement", "x": {"baseline": "none"}}
    config = parse_model(ExperimentConfig, data, "x.yaml")
    assert study_x(config, "aligned") == "pretrain" and study_x(config, "baseline") == "none"


def test_study_x_must_name_a_condition(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    data["study"] = {"kind": "dose", "x": {"no_such": 0.1}}
    with pytest.raises(ConfigError, match=r"study\.x: no condition named no_such"):
        parse_model(ExperimentConfig, data, "x.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_loads(path: Path) -> None:
    config = load_experiment(path)
    assert config.conditions


@pytest.mark.parametrize("name", ["persistence", "placement", "dose", "disclosure"])
def test_study_configs_exist_with_their_study(name: str) -> None:
    path = Path(__file__).parent.parent / "configs" / f"{name}.yaml"
    config = load_experiment(path)
    assert config.study is not None and config.study.kind == name
    if name == "persistence":
        assert "posttrain" in config.model_fields_set
