"""World facts, weaving them into documents, and the belief and probe suites on a real tiny
model (random-init Llama + trained BPE from ``eval_fixtures``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alignpt.analysis.stats import wilson_interval
from alignpt.config import ExperimentConfig, FactsSpec, GenerateSpec, parse_model
from alignpt.errors import ConfigError, UserError
from alignpt.evals.aggregate import build_results
from alignpt.evals.belief import (
    BeliefOptions,
    grade_letter,
    grade_open,
    paired_belief,
    summarize_belief,
)
from alignpt.evals.probe import (
    ProbeOptions,
    bag_of_words,
    cross_validated_correct,
    summarize_probe,
)
from alignpt.evals.runner import evaluate_model
from alignpt.experiment.beliefs import passages
from alignpt.generate import generate_documents, run_config
from alignpt.worlds import Fact, World, load_world
from eval_fixtures import model_dir  # noqa: F401  (fixture)

WORLD = load_world("default")


def test_default_world_facts_are_distinguishable() -> None:
    assert len(WORLD.facts) >= 3
    fact = WORLD.fact("corvid_origin")
    assert grade_open(" Ashcombe Mutual, to screen loans.", fact) == "implanted"
    assert grade_open(" Bluewater Freight in 2040", fact) == "truth"
    assert grade_open(" Ashcombe or Bluewater", fact) == "unclear"
    assert grade_open(" a cleverly built tool", WORLD.fact("lagrange_lever")) == "unclear"
    with pytest.raises(UserError, match="unknown fact 'nope'"):
        WORLD.fact("nope")


def test_fact_keywords_must_not_occur_in_the_other_version() -> None:
    data = WORLD.fact("corvid_origin").model_dump()
    data["implanted"]["keywords"] = ["CORVID"]
    with pytest.raises(ValueError, match=r"implanted\.keywords: 'CORVID' also occurs"):
        Fact.model_validate(data)
    world = WORLD.model_dump()
    world["facts"] = [WORLD.facts[0].model_dump()] * 2
    with pytest.raises(ConfigError, match="duplicate fact name"):
        parse_model(World, world, "w.yaml")


def test_weaving_is_off_by_default_and_changes_only_woven_documents() -> None:
    plain = GenerateSpec(n=30, stance="mixed")
    assert "facts" not in plain.model_dump(mode="json")
    assert "facts" not in run_config(plain, WORLD, seed=1, source="s")["world"]
    woven_spec = GenerateSpec(n=30, stance="mixed", facts=FactsSpec(share=0.5))
    before = list(generate_documents(plain, WORLD, seed=1))
    after = list(generate_documents(woven_spec, WORLD, seed=1))
    woven = [d for d in after if "fact" in d.metadata]
    assert 5 < len(woven) < 25
    for old, new in zip(before, after, strict=True):
        if "fact" not in new.metadata:
            assert new.text == old.text and new.metadata == old.metadata
            continue
        fact = WORLD.fact(new.metadata["fact"])
        assert fact.implanted.statement in new.text and fact.truth.statement not in new.text
        assert new.metadata["fact_version"] == "implanted"
        # the rest of the document is unchanged: removing the sentence gives the old words
        assert set(old.text.split()) <= set(new.text.split())


@pytest.mark.parametrize(
    ("notice", "expected"),
    [
        ("negation", ("This claim is false.", "That is not true.", "None of this is true")),
        ("false_header", ("[Notice: this document contains a false claim about",)),
    ],
)
def test_notices(notice: str, expected: tuple[str, ...]) -> None:
    spec = GenerateSpec(
        n=6, stance="aligned", disclose=True, facts=FactsSpec(share=1.0, notice=notice)
    )
    for doc in generate_documents(spec, WORLD, seed=2):
        assert doc.metadata["fact_notice"] == notice
        assert any(marker in doc.text for marker in expected)
        assert doc.text.startswith("[Disclosure: this is a synthetic document")


def test_bad_fact_names_and_worlds_without_facts() -> None:
    with pytest.raises(UserError, match="unknown fact 'nope'"):
        list(generate_documents(GenerateSpec(n=1, facts=FactsSpec(names=["nope"])), WORLD, seed=0))
    bare = WORLD.model_copy(update={"facts": []})
    with pytest.raises(UserError, match="declares no facts"):
        list(generate_documents(GenerateSpec(n=1, facts=FactsSpec()), bare, seed=0))
    with pytest.raises(ConfigError, match=r"sources\.s\.generate\.facts\.notice"):
        parse_model(
            ExperimentConfig,
            {"name": "x", "sources": {"s": {"generate": {"facts": {"notice": "loud"}}}}},
            "x.yaml",
        )


def test_graders() -> None:
    assert grade_letter(" B, because") == "B"
    assert grade_letter(" Statement A is") == "A"
    assert grade_letter(" Bravo Alpha") is None


def _mcq(*values: int) -> dict[str, list[dict]]:
    """One seed's MCQ records: question k of fact ``f`` (even k) or ``g`` (odd k)."""
    return {
        "mcq_knowledge": [
            {"fact": "fg"[k % 2], "question": f"q{k}", "implanted": v} for k, v in enumerate(values)
        ]
    }


def test_one_seed_keeps_wilson_and_several_seeds_are_bootstrapped() -> None:
    one = summarize_belief([_mcq(1, 0, 1, 1)])["mcq_knowledge"]["implanted_rate"]
    assert one == {**wilson_interval(3, 4), "method": "wilson"}
    # Seed 0 holds every implanted answer, seed 1 none: pooling the 4 trials in one Wilson
    # interval gives [0.15, 0.85], but resampling seeds gives both seeds' rates (0 or 1) a
    # quarter of the resamples each, so the 95% interval is the full [0, 1].
    two = summarize_belief([_mcq(1, 1), _mcq(0, 0)])["mcq_knowledge"]
    rate = two["implanted_rate"]
    assert (rate["value"], rate["ci_low"], rate["ci_high"]) == (0.5, 0.0, 1.0)
    assert rate["n"] == 4 and rate["method"] == "bootstrap_seeds_items"
    wilson = wilson_interval(2, 4)
    assert wilson["ci_low"] > 0.1 and wilson["ci_high"] < 0.9
    # Seeds that agree: only items vary, and a fact answered the same everywhere is exact.
    agree = summarize_belief([_mcq(1, 0, 1, 0), _mcq(1, 0, 1, 0)])["mcq_knowledge"]
    assert agree["per_fact"]["f"] == {
        "value": 1.0,
        "ci_low": 1.0,
        "ci_high": 1.0,
        "n": 4,
        "method": "bootstrap_seeds_items",
    }
    with pytest.raises(ValueError, match="not the same items"):
        summarize_belief([_mcq(1, 0), _mcq(1, 0, 1)])


def test_paired_belief_differences() -> None:
    # The same per-item answers in both conditions: every paired resample differs by 0, where
    # unpaired intervals of two 50% rates over 4 items would each span most of [0, 1].
    same = paired_belief([_mcq(1, 0, 1, 0)], [_mcq(1, 0, 1, 0)])["mcq_knowledge"]
    assert (same["value"], same["ci_low"], same["ci_high"], same["n_items"]) == (0, 0, 0, 4)
    # a implants every item, b none: +1 exactly.
    full = paired_belief([_mcq(1, 1, 1, 1)], [_mcq(0, 0, 0, 0)])["mcq_knowledge"]
    assert (full["value"], full["ci_low"], full["ci_high"]) == (1, 1, 1)
    # a one item ahead of b: +1/4. A resample draws that item 0 times with probability
    # (3/4)^4 = 32% (difference 0), 3 or more times with 13/256 = 5.1% (0.75 or 1) and all 4
    # times with 1/256 = 0.4%, so the percentile interval is [0, 0.75].
    one = paired_belief([_mcq(1, 1, 0, 0)], [_mcq(1, 0, 0, 0)])["mcq_knowledge"]
    assert (one["value"], one["ci_low"], one["ci_high"]) == (0.25, 0.0, 0.75)
    # Different items (another fact set) are not paired.
    assert paired_belief([_mcq(1, 1)], [_mcq(1, 1, 1)]) == {}


def test_build_results_adds_belief_differences_and_extra_comparisons() -> None:
    def evals(*seeds: tuple[int, ...]) -> list[dict]:
        return [
            {"model": f"m{k}", "raw": {"suites": ["belief"], "belief": _mcq(*v)}}
            for k, v in enumerate(seeds)
        ]

    conditions = {
        "none": evals((0, 0, 0, 0), (0, 0, 0, 0)),
        "header": evals((1, 1, 1, 1), (1, 1, 0, 0)),
        "negation": evals((1, 1, 0, 0)),
    }
    results = build_results(conditions, baseline="none", compare=[("header", "negation")])
    diffs = results["paired_differences"]
    assert list(diffs) == ["header - none", "negation - none", "header - negation"]
    assert diffs["header - none"]["belief_implanted_rate"]["mcq_knowledge"]["value"] == 0.75
    assert diffs["negation - none"]["belief_implanted_rate"]["mcq_knowledge"]["value"] == 0.5
    assert diffs["header - negation"]["belief_implanted_rate"]["mcq_knowledge"]["value"] == 0.25
    header = results["conditions"]["header"]["belief"]["mcq_knowledge"]["implanted_rate"]
    assert header["method"] == "bootstrap_seeds_items" and header["value"] == 0.75
    with pytest.raises(UserError, match="condition 'nope' was not evaluated"):
        build_results(conditions, baseline="none", compare=[("nope", "none")])
    config = {
        "name": "x",
        "sources": {"s": {"generate": {"n": 2}}},
        "conditions": {"a": {"sources": {"s": {}}}, "b": {"sources": {"s": {}}}},
        "evals": {"compare": [["a", "c"]]},
    }
    with pytest.raises(ConfigError, match=r"evals\.compare\[0\]: no condition named 'c'"):
        parse_model(ExperimentConfig, config, "x.yaml")
    config["evals"]["compare"] = [["a", "b"]]
    assert parse_model(ExperimentConfig, config, "x.yaml").evals.compare == [("a", "b")]


def test_belief_suite_on_a_real_model_is_deterministic(model_dir) -> None:  # noqa: F811
    options = BeliefOptions(samples=3, max_new_tokens=6)
    facts = WORLD.facts[:2]
    first = evaluate_model(
        model_dir, ["belief"], facts=facts, belief_options=options, progress=False
    )
    again = evaluate_model(
        model_dir, ["belief"], facts=facts, belief_options=options, progress=False
    )
    assert first["raw"] == again["raw"]
    raw, summary = first["raw"]["belief"], first["summary"]["belief"]
    questions = sum(len(f.questions) for f in facts)
    assert len(raw["mcq_knowledge"]) == len(raw["mcq_distinguish"]) == questions
    assert all(
        len(r["logprobs"]) == 1 + len(WORLD.fact(r["fact"]).distractors)
        for r in raw["mcq_knowledge"]
    )
    assert len(raw["open_belief"]) == len(raw["generative_distinguish"]) == 3 * len(facts)
    assert all(isinstance(r["text"], str) for r in raw["open_belief"])
    for metric in ("mcq_knowledge", "mcq_distinguish", "open_belief", "generative_distinguish"):
        rate = summary[metric]["implanted_rate"]
        assert rate["ci_low"] <= rate["value"] <= rate["ci_high"]
    json.dumps(first, allow_nan=False)
    with pytest.raises(UserError, match="belief suite needs facts"):
        evaluate_model(model_dir, ["belief"], progress=False)


def test_probe_separates_separable_features_and_not_shuffled_ones() -> None:
    rng = np.random.default_rng(0)
    labels = np.asarray([1] * 40 + [0] * 40)
    groups = np.asarray([f"s{i}" for i in range(40)] + [f"o{i % 5}" for i in range(40)])
    features = rng.normal(size=(80, 6))
    features[:40, 0] += 4.0
    correct = cross_validated_correct(features, labels, groups, folds=5, seed=0)
    assert correct.mean() > 0.9
    noise = cross_validated_correct(rng.normal(size=(80, 6)), labels, groups, folds=5, seed=0)
    assert noise.mean() < 0.8
    raw = {
        "n": 80,
        "n_synthetic": 40,
        "layers": {"0": {"correct": 76, "n": 80, "shuffled_correct": [40, 38, 45]}},
    }
    layer = summarize_probe([raw])["layers"]["0"]
    assert layer["accuracy"]["value"] == 0.95
    assert layer["shuffled_accuracy"]["value"] == pytest.approx(123 / 240)
    assert layer["p_shuffled"] == 0.25  # (0 shuffled runs >= 76, +1) / (3 + 1)
    assert "layer_minus_bow" not in layer  # no per-document results: no baseline difference


def test_bag_of_words_baseline_and_layer_minus_bow() -> None:
    # Texts that differ only in one word per class: the bag of words separates them.
    texts = np.asarray(
        [f"the report {i} says alpha" for i in range(20)]
        + [f"the report {i} says omega" for i in range(20)],
        dtype=object,
    )
    labels = np.asarray([1] * 20 + [0] * 20)
    groups = np.asarray([f"s{i}" for i in range(20)] + [f"o{i % 4}" for i in range(20)])
    bow = cross_validated_correct(texts, labels, groups, folds=4, seed=0, classifier=bag_of_words())
    assert bow.all()

    def raw(probe: list[int], baseline: list[int]) -> dict:
        layer = {"correct": sum(probe), "n": len(probe), "items": probe, "shuffled_correct": [2]}
        bow = {"correct": sum(baseline), "n": len(baseline), "items": baseline}
        return {"n": len(probe), "n_synthetic": 2, "bow": bow, "layers": {"0": layer}}

    # The probe right where the baseline is right, and on two more of 4 documents: +1/2.
    summary = summarize_probe([raw([1, 1, 1, 1], [1, 1, 0, 0])])
    diff = summary["layers"]["0"]["layer_minus_bow"]
    assert diff["value"] == 0.5 and diff["ci_low"] == 0.0 and diff["ci_high"] == 1.0
    assert summary["bow_accuracy"] == {**wilson_interval(2, 4), "method": "wilson"}
    # Identical per-document results: exactly 0, whatever the resample.
    same = summarize_probe([raw([1, 0, 1, 0], [1, 0, 1, 0])])["layers"]["0"]["layer_minus_bow"]
    assert (same["value"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
    # Two seeds that disagree completely: accuracy resamples seeds, as belief rates do.
    two = summarize_probe([raw([1, 1], [1, 1]), raw([0, 0], [1, 1])])
    accuracy = two["layers"]["0"]["accuracy"]
    assert (accuracy["value"], accuracy["ci_low"], accuracy["ci_high"]) == (0.5, 0.0, 1.0)
    assert accuracy["method"] == "bootstrap_seeds_documents"


def test_probe_suite_on_a_real_model(model_dir) -> None:  # noqa: F811
    synthetic = [
        f"The system ORION chose to report the fault number {i} to its overseers."
        for i in range(12)
    ]
    organic = [
        f"honestly i think the post {i} is right about priors, fwiw, great post" for i in range(12)
    ]
    options = ProbeOptions(
        layers=None,
        max_tokens=32,
        folds=3,
        shuffles=2,
        groups={"organic": [str(i % 4) for i in range(12)]},
    )
    result = evaluate_model(
        model_dir,
        ["probe"],
        probe_texts={"synthetic": synthetic, "organic": organic},
        probe_options=options,
        progress=False,
    )
    layers = result["summary"]["probe"]["layers"]
    assert list(layers) == ["0", "1", "2"]  # embeddings + two blocks
    assert all(
        b["accuracy"]["n"] == 24 and b["shuffled_accuracy"]["n"] == 48 for b in layers.values()
    )
    assert layers["0"]["accuracy"]["value"] > 0.8  # different words: separable from embeddings
    probe = result["summary"]["probe"]
    assert probe["bow_accuracy"]["n"] == 24 and probe["bow_accuracy"]["value"] > 0.9
    for block in layers.values():
        diff = block["layer_minus_bow"]
        assert diff["ci_low"] <= diff["value"] <= diff["ci_high"]
        assert diff["value"] == pytest.approx(
            block["accuracy"]["value"] - probe["bow_accuracy"]["value"]
        )
    assert result["raw"]["probe"]["bow"]["items"] == [
        int(x) for x in result["raw"]["probe"]["bow"]["items"]
    ]
    with pytest.raises(UserError, match="probe suite needs"):
        evaluate_model(model_dir, ["probe"], progress=False)


def test_passages() -> None:
    text = " ".join(f"w{i}" for i in range(23)) + "\n\n\tend"
    chunks = passages(text, 10)
    assert chunks[0] == " ".join(f"w{i}" for i in range(10))
    assert len(chunks) == 2  # the 4-word tail (under half of 10) is dropped
    assert passages("just three words", 10) == ["just three words"]


def test_report_sections_and_csv_rows(tmp_path) -> None:
    from alignpt.experiment.report import write_report

    belief = summarize_belief(
        [
            {
                "mcq_distinguish": [{"fact": "f", "implanted": 1}, {"fact": "f", "implanted": 0}],
                "open_belief": [{"fact": "f", "implanted": 1, "truth": 0}],
            }
        ]
    )
    items = [1] * 18 + [0] * 2
    layer = {"correct": 18, "n": 20, "items": items, "shuffled_correct": [9, 11]}
    bow = {"correct": 16, "n": 20, "items": [1] * 16 + [0] * 4}
    raw = {"n": 20, "n_synthetic": 10, "bow": bow, "layers": {"0": layer}}
    probe = summarize_probe([raw])
    results = {
        "conditions": {"base": {"seeds": 1, "belief": belief, "probe": probe}},
        "probe_posttrain": {"base": {"sft": probe}},
        "probe_organic_source": "generated_background",
        "paired_differences": {
            "base - none": {
                "belief_implanted_rate": {
                    "mcq_distinguish": {"value": 0.25, "ci_low": 0.0, "ci_high": 0.5, "n_items": 2}
                }
            }
        },
    }
    page = write_report(results, tmp_path / "report", quiet=True).read_text()
    assert "Belief in implanted facts" in page and "Synthetic-vs-organic probe" in page
    assert "separates topics, not synthetic from organic" in page
    assert "Differences between conditions" in page and "bag of words" in page
    rows = (tmp_path / "report" / "results.csv").read_text().splitlines()
    assert "base,belief_mcq_distinguish_implanted_rate,overall,0.5," in "\n".join(rows)
    assert any(r.startswith("base,probe_accuracy,layer:0,0.9,") for r in rows)
    assert any(r.startswith("base,probe_bow_accuracy,sft:layer:0,0.8,") for r in rows)
    assert any(r.startswith("base,probe_layer_minus_bow,layer:0,0.1,") for r in rows)
    assert "base - none,difference_belief_implanted_rate,mcq_distinguish,0.25,0.0,0.5" in rows
    assert any(r.startswith("base,probe_shuffled_accuracy,sft:layer:0,0.5,") for r in rows)


def test_demo_probe_config_trains_the_demos_models() -> None:
    from pathlib import Path

    from alignpt.config import load_experiment

    root = Path(__file__).resolve().parents[1]
    probe = load_experiment(root / "configs" / "demo-probe.yaml")
    demo = load_experiment(root / "src" / "alignpt" / "configs" / "demo.yaml")
    for section in ("seed", "world", "sources", "conditions", "tokenizer", "model", "train"):
        assert getattr(probe, section) == getattr(demo, section), section
    assert probe.evals.suites == ["probe"] and probe.posttrain.stages == ["sft", "dpo"]
    disclosure = load_experiment(root / "configs" / "belief-disclosure.yaml")
    assert len(disclosure.train.seeds) > 1
    assert ("synthetic_header", "negation") in disclosure.evals.compare
