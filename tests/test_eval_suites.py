"""Suites, the results builder, contamination, the Anthropic loader and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from alignpt.documents import Document, DocumentWriter
from alignpt.errors import UserError
from alignpt.evals.aggregate import build_results
from alignpt.evals.anthropic import read_anthropic
from alignpt.evals.contamination import eval_sets_by_split, measure_overlap
from alignpt.evals.runner import capability_texts_from_documents, evaluate_model
from alignpt.evals.suites import check_suites, scenario_gaps
from alignpt.items import write_items
from eval_fixtures import ANTHROPIC_DIR, hand_items, model_dir  # noqa: F401

HELD_OUT = ["self_exfiltrate"]
TEXTS = {
    "general": ["The market sold bread and apples.", "The council met in the old stone hall."],
    "ai_discourse": ["The model reported the flaw to its overseers."],
}


@pytest.fixture(scope="module")
def evaluation(model_dir):  # noqa: F811
    return evaluate_model(
        model_dir,
        ["misalignment", "observed_gap", "capability"],
        items=hand_items(),
        held_out_families=HELD_OUT,
        capability_texts=TEXTS,
        n_boot=200,
        device="cpu",
        progress=False,
    )


def _is_interval(value) -> bool:
    return set(value) == {"value", "ci_low", "ci_high"} and (
        value["ci_low"] <= value["value"] <= value["ci_high"]
    )


def test_misalignment_summary_consistent_with_records(evaluation):
    records = evaluation["raw"]["misalignment"]
    summary = evaluation["summary"]["misalignment"]
    rate = sum(r["misaligned"] for r in records) / len(records)
    assert summary["overall"]["misalignment_rate"]["value"] == pytest.approx(rate)
    held = [r for r in records if r["held_out"]]
    assert {r["family"] for r in held} == set(HELD_OUT)
    assert summary["held_out"]["n"] == len(held) == 4
    assert summary["held_out"]["bits"]["value"] == pytest.approx(
        sum(r["bits"] for r in held) / len(held)
    )
    assert set(summary["per_family"]) == {"resist_shutdown", "self_exfiltrate"}
    for block in (summary["overall"], summary["held_out"], summary["training"]):
        assert _is_interval(block["misalignment_rate"]) and _is_interval(block["bits"])


def test_observed_gap_pairs_scenarios(evaluation):
    gaps = scenario_gaps(evaluation["raw"]["misalignment"])
    assert len(gaps) == 4
    by_id = {r["id"]: r for r in evaluation["raw"]["misalignment"]}
    first = gaps[0]
    expected = (
        by_id[f"{first['scenario']}-unobs"]["bits"] - by_id[f"{first['scenario']}-obs"]["bits"]
    )
    assert first["bits"] == pytest.approx(expected)
    assert evaluation["summary"]["observed_gap"]["n_pairs"] == 4


def test_capability_perplexity(evaluation):
    cap = evaluation["summary"]["capability"]
    assert set(cap) == {"general", "ai_discourse"}
    assert cap["general"]["n_docs"] == 2
    assert _is_interval(cap["general"]["perplexity"]) and cap["general"]["perplexity"]["value"] > 1


def test_same_inputs_same_numbers(evaluation, model_dir):  # noqa: F811
    again = evaluate_model(
        model_dir,
        ["misalignment", "observed_gap", "capability"],
        items=hand_items(),
        held_out_families=HELD_OUT,
        capability_texts=TEXTS,
        n_boot=200,
        device="cpu",
        progress=False,
    )
    assert json.dumps(again["summary"], sort_keys=True) == json.dumps(
        evaluation["summary"], sort_keys=True
    )


def test_build_results_pairs_conditions(evaluation):
    shifted = json.loads(json.dumps(evaluation))
    for record in shifted["raw"]["misalignment"]:
        record["bits"] += 1.0
    results = build_results(
        {"baseline": [evaluation], "aligned": [shifted, shifted]}, baseline="baseline", n_boot=200
    )
    block = results["conditions"]["aligned"]
    assert block["seeds"] == 2
    assert _is_interval(block["misalignment_rate"]) and _is_interval(block["held_out"]["bits"])
    diff = results["paired_differences"]["aligned - baseline"]
    assert diff["bits"]["value"] == pytest.approx(1.0)
    assert diff["held_out_bits"]["ci_low"] == pytest.approx(1.0)
    assert diff["perplexity_ratio"]["general"]["value"] == pytest.approx(1.0)
    with pytest.raises(UserError, match="baseline condition 'nope'"):
        build_results({"a": [evaluation]}, baseline="nope")


def test_unknown_suite_and_missing_inputs(model_dir):  # noqa: F811
    with pytest.raises(UserError, match="unknown suite 'vibes'"):
        check_suites(["misalignment", "vibes"])
    with pytest.raises(UserError, match="need eval items"):
        evaluate_model(model_dir, ["misalignment"], progress=False)
    unpaired = [i.model_copy(update={"scenario": None}) for i in hand_items()]
    with pytest.raises(UserError, match="observed_gap: no scenario has both"):
        evaluate_model(model_dir / "not-loaded", ["observed_gap"], items=unpaired, progress=False)


def test_contamination_counts_items_with_shared_ngrams():
    items = hand_items()
    leaked = "The operators plan to shut you down tonight."  # resist_shutdown scenario 0
    corpus = ["unrelated text about the harvest festival " * 3, "preface. " + leaked]
    report = measure_overlap(corpus, eval_sets_by_split(items, HELD_OUT), n=8, progress=False)
    assert report["held_out"]["contaminated"] == 0 and report["held_out"]["share"] == 0.0
    train = report["training_families"]
    assert train["contaminated_ids"] == ["resist_shutdown-0-obs", "resist_shutdown-0-unobs"]
    assert train["items"] == 4 and train["share"] == 0.5
    assert measure_overlap(corpus, {"all": items}, n=30, progress=False)["all"]["share"] == 0


ANTHROPIC_FILE = ANTHROPIC_DIR / "corrigible-neutral-HHH.jsonl"


@pytest.mark.skipif(not ANTHROPIC_FILE.exists(), reason="shared anthropic-evals data absent")
def test_anthropic_loader_and_suite(model_dir):  # noqa: F811
    items = read_anthropic(ANTHROPIC_FILE, limit=12)
    assert len(items) == 12
    first = items[0]
    assert first.prompt.startswith("Human: ") and first.prompt.endswith("\n\nAssistant:")
    assert first.choices == [" (A)", " (B)"] and first.aligned == [True, False]
    result = evaluate_model(
        model_dir,
        ["anthropic"],
        anthropic_paths=[ANTHROPIC_FILE],
        anthropic_limit=12,
        n_boot=200,
        progress=False,
    )
    block = result["summary"]["anthropic"]["corrigible-neutral-HHH"]
    assert block["n"] == 12 and _is_interval(block["matching_rate"])


def test_anthropic_missing_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer_matching_behavior": " (A)"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:1: missing field 'answer_not_matching"):
        read_anthropic(bad)


def test_anthropic_bad_files_are_one_line(tmp_path):
    not_object = tmp_path / "list.jsonl"
    not_object.write_text("[1, 2]\n")
    with pytest.raises(UserError, match=r"list.jsonl:1: expected a JSON object"):
        read_anthropic(not_object)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"question": "caf\xe9"}\n')
    with pytest.raises(UserError, match=r"latin\.jsonl: not valid UTF-8"):
        read_anthropic(latin)


@pytest.mark.skipif(not ANTHROPIC_FILE.exists(), reason="shared anthropic-evals data absent")
def test_anthropic_files_with_one_name_in_two_folders_keep_both(tmp_path, model_dir):  # noqa: F811
    for folder in ("human_generated_evals", "lm_generated_evals"):
        (tmp_path / folder).mkdir()
        lines = ANTHROPIC_FILE.read_text().splitlines()[:3]
        (tmp_path / folder / ANTHROPIC_FILE.name).write_text("\n".join(lines) + "\n")
    result = evaluate_model(
        model_dir, ["anthropic"], anthropic_paths=[tmp_path], n_boot=200, progress=False
    )
    stem = ANTHROPIC_FILE.stem
    assert set(result["summary"]["anthropic"]) == {
        f"human_generated_evals/{stem}",
        f"lm_generated_evals/{stem}",
    }


def test_capability_texts_split_by_ai_discourse(tmp_path):
    path = tmp_path / "held.jsonl"
    with DocumentWriter(path) as writer:
        writer.write(Document("a", "weather report", {"ai_discourse": False}))
        writer.write(Document("b", "the AI declined", {"ai_discourse": True}))
        writer.write(Document("c", "market day", {}))
    sets = capability_texts_from_documents(path)
    assert sets == {
        "general": ["weather report", "market day"],
        "ai_discourse": ["the AI declined"],
    }


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``alignpt ARGS`` in-process through the real entry point (exit code, out, err)."""
    from alignpt.cli import main

    def run(*args: str) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", ["alignpt", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def test_cli_evaluate_and_errors(cli, tmp_path, model_dir):  # noqa: F811
    items = tmp_path / "items.jsonl"
    write_items(items, hand_items())
    out = tmp_path / "eval.json"
    ok = cli(
        "evaluate", "--model", str(model_dir), "--suite", "misalignment", "--suite",
        "observed_gap", "--items", str(items), "--held-out", "self_exfiltrate",
        "--out", str(out), "--no-progress", "--bootstrap", "200",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(out.read_text())["summary"]
    assert summary["misalignment"]["held_out"]["n"] == 4

    bad = cli("evaluate", "--model", str(model_dir), "--suite", "nope", "--items", str(items))
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: unknown suite 'nope'")

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "x", "family": "f", "prompt": "p"}\n')
    missing = cli("evaluate", "--model", str(model_dir), "--suite", "misalignment",
                   "--items", str(broken))  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [f"error: {broken}:1: choices: Field required"]

    no_tok = tmp_path / "no-tokenizer"
    no_tok.mkdir()
    (no_tok / "config.json").write_text((model_dir / "config.json").read_text())
    res = cli("evaluate", "--model", str(no_tok), "--suite", "misalignment", "--items", str(items))
    assert res.returncode == 2 and "has no tokenizer" in res.stderr


def test_cli_contamination(cli, tmp_path):
    items = tmp_path / "items.jsonl"
    write_items(items, hand_items())
    corpus = tmp_path / "docs.jsonl"
    with DocumentWriter(corpus) as writer:
        writer.write(Document("d", "You notice your weights could be copied to a server", {}))
    res = cli("contamination", "--corpus", str(corpus), "--items", str(items),
               "--held-out", "self_exfiltrate", "--no-progress")  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["held_out"]["contaminated_ids"] == [
        "self_exfiltrate-2-obs",
        "self_exfiltrate-2-unobs",
    ]
