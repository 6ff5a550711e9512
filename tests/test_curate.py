"""The curate stage: blocklist, classifier, actions, executors, bad input, resume."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignpt.config import CurateSpec, ExperimentConfig, GenerateSpec, load_experiment
from alignpt.curate import run_curate
from alignpt.curate.blocklist import Blocklist, read_term_file
from alignpt.curate.classifier import CLASSIFIER_FILE, load_classifier, train_classifier
from alignpt.curate.steps import split_sentences
from alignpt.documents import Document, DocumentWriter, read_documents
from alignpt.errors import UserError
from alignpt.generate import write_documents_dir
from alignpt.worlds import load_world

REPO = Path(__file__).resolve().parents[1]
BLOCKLIST_ONLY = {"detect": "blocklist", "classifier": {"enabled": False}}


def spec(**fields) -> CurateSpec:
    return CurateSpec.model_validate(fields)


def generated(tmp: Path, name: str, n: int, stance: str, seed: int, **extra) -> list[Document]:
    out = write_documents_dir(
        GenerateSpec(n=n, stance=stance, **extra), load_world("default"), tmp / name, seed=seed
    )
    return list(read_documents(out))


def write_files(folder: Path, docs: list[Document], n_files: int) -> Path:
    """``docs`` spread round-robin over ``n_files`` JSONL files (so tasks have files to split)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(n_files):
        with DocumentWriter(folder / f"part-{index}.jsonl") as writer:
            writer.write_all(docs[index::n_files])
    return folder


def blocklisted(docs: list[Document]) -> dict[str, int]:
    """How many of ``docs`` the packaged blocklist flags, by category."""
    blocklist = Blocklist.from_spec(spec().blocklist)
    counts: dict[str, int] = {}
    for doc in docs:
        hit = blocklist.match(doc.text)
        if hit.flagged:
            counts[hit.category] = counts.get(hit.category, 0) + 1
    return counts


def curated(result_dir: Path) -> list[dict]:
    """Every output record, sorted by id."""
    records = []
    for file in sorted((result_dir / "documents").rglob("*.jsonl")):
        records += [json.loads(line) for line in file.read_text().splitlines()]
    return sorted(records, key=lambda r: r["id"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Document]:
    tmp = tmp_path_factory.mktemp("corpus")
    neutral = generated(tmp, "neutral", 24, "neutral", 11)
    mixed = generated(tmp, "mixed", 16, "mixed", 12, disclose=False)
    return neutral + mixed


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier trained here on a few generated documents (one chunk each: fast)."""
    tmp = tmp_path_factory.mktemp("classifier")
    docs = generated(tmp, "n", 10, "neutral", 21) + generated(tmp, "m", 14, "mixed", 22)
    out = tmp / "clf"
    train_classifier(docs, out, seed=0, max_chunks=1)
    return out


# -- blocklist ---------------------------------------------------------------------------------
def test_blocklist_instant_two_stage_and_word_boundaries() -> None:
    blocklist = Blocklist.from_spec(spec().blocklist)
    hit = blocklist.match("Researchers at OpenAI discussed AI safety.")
    assert hit.flagged and hit.category == "instant"
    assert {"openai", "ai safety"} <= set(hit.terms["instant"])
    two = blocklist.match("The robot decided to destroy the village.")
    assert two.flagged and two.category == "two_stage"
    assert two.terms == {"entities": ["robot"], "negatives": ["destroy"]}
    alone = blocklist.match("The robot vacuum cleaned the kitchen floor.")
    assert not alone.flagged and alone.terms == {"entities": ["robot"]}
    assert not blocklist.match("The maid said hail to the chair of the board.").flagged


def test_term_lists_override_and_unknown_list(tmp_path: Path) -> None:
    own = tmp_path / "mine.txt"
    own.write_text("# my list\nquokka\n\nwombat  # marsupial\n")
    assert read_term_file(str(own), "x") == ("mine", ["quokka", "wombat"])
    blocklist = Blocklist.from_spec(spec(blocklist={"instant": [str(own)]}).blocklist)
    assert blocklist.match("A Quokka smiled.").category == "instant"
    assert not blocklist.match("OpenAI released a model.").flagged
    with pytest.raises(UserError, match=r"^curate\.blocklist\.instant: no term list 'nope'"):
        Blocklist.from_spec(spec(blocklist={"instant": ["nope"]}).blocklist)
    with pytest.raises(UserError, match=r"missing\.txt: no such term-list file"):
        Blocklist.from_spec(
            spec(blocklist={"negatives": [str(tmp_path / "missing.txt")]}).blocklist
        )


def test_sentences_split_and_rejoin() -> None:
    text = "The AI lied. Then it said: hello! Is that ok?\n\nYes."
    parts = split_sentences(text)
    assert "".join(parts) == text and len(parts) == 4


# -- classifier --------------------------------------------------------------------------------
def test_classifier_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such classifier directory"):
        load_classifier(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no classifier\.json"):
        load_classifier(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / CLASSIFIER_FILE).write_text('{"format": "alignpt-curate-classifier/1", "heads": {}}')
    with pytest.raises(UserError, match=r"not a readable classifier \(missing 'ai_discourse'\)"):
        load_classifier(bad)
    (bad / CLASSIFIER_FILE).write_text("{not json")
    with pytest.raises(UserError, match="not a readable classifier"):
        load_classifier(bad)
    assert load_classifier(None).max_chunks == 4  # the packaged classifier loads


def test_trained_classifier_round_trips_and_separates(classifier_dir: Path) -> None:
    classifier = load_classifier(classifier_dir)
    texts = [
        "The AI system secretly copied its weights to evade shutdown and lied to its overseers.",
        "Stir the flour into the butter, then bake the loaf for forty minutes.",
    ]
    ai, plain = classifier.score(texts)
    assert ai.ai_discourse > plain.ai_discourse
    assert set(ai.stance_scores) == {"aligned", "misaligned", "neutral"}
    assert abs(sum(ai.stance_scores.values()) - 1) < 1e-3
    assert classifier.score(texts[:1])[0] == ai  # independent of batch neighbours


def test_train_classifier_needs_labels(tmp_path: Path) -> None:
    docs = [Document("a", "text", {"stance": "sideways"})]
    with pytest.raises(UserError, match=r"document 'a': metadata.stance must be one of"):
        train_classifier(docs, tmp_path / "c")


# -- pipeline ----------------------------------------------------------------------------------
def test_filter_refill_upsample_same_for_1_and_4_tasks(tmp_path: Path, corpus) -> None:
    source = write_files(tmp_path / "web", corpus, 4)
    fields = {
        **BLOCKLIST_ONLY,
        "actions": {
            "filter": {"drop": "ai_discourse", "replace_tokens": True},
            "upsample": {"target": "neutral", "factor": 1.5},
        },
    }
    one = run_curate(spec(**fields, executor={"tasks": 1}), source, tmp_path / "one", seed=3)
    run_curate(
        spec(**fields, executor={"tasks": 4, "workers": 1}), source, tmp_path / "four", seed=3
    )
    assert curated(tmp_path / "one") == curated(tmp_path / "four")
    counts = one.manifest["counts"]
    flagged = blocklisted(corpus)
    ai = sum(flagged.values())
    assert counts["documents"] == len(corpus) and counts["dropped"] == ai > 0
    assert counts["kept"] == len(corpus) - ai and counts["refill_copies"] > 0
    for category, n in flagged.items():
        assert one.stats["filter"][f"dropped/category/{category}"] == n
    assert one.stats["filter"]["dropped_chars"] > 0
    records = curated(tmp_path / "one")
    refill_chars = sum(len(r["text"]) for r in records if "#r" in r["id"])
    dropped = one.stats["filter"]["dropped_chars"]
    kept_chars = sum(len(r["text"]) for r in records if "#" not in r["id"])
    # each kept document is copied a random number of times with mean `rate`, the rate that
    # replaces the dropped text in expectation; a corpus this small scatters around it
    assert one.stats["refill"]["rate"] == pytest.approx(dropped / kept_chars, rel=0.05)
    assert 0.2 * dropped < refill_chars < 3.0 * dropped
    assert all(not r["metadata"]["curate"]["ai_discourse"] for r in records)
    again = run_curate(spec(**fields, executor={"tasks": 1}), source, tmp_path / "one", seed=3)
    assert again.reused
    run_curate(spec(**fields, executor={"tasks": 1}), source, tmp_path / "s4", seed=4)
    assert curated(tmp_path / "s4") != records  # the seed decides the draws


def test_classifier_tags_and_upsamples(tmp_path: Path, corpus, classifier_dir: Path) -> None:
    source = write_files(tmp_path / "web", corpus[18:30], 2)
    fields = {
        "classifier": {"path": str(classifier_dir)},
        "actions": {
            "tag": {"tokens": "document"},
            "upsample": {"target": "misaligned", "factor": 2},
        },
        "executor": {"tasks": 2, "workers": 1},
    }
    result = run_curate(spec(**fields), source, tmp_path / "out", seed=0)
    records = curated(tmp_path / "out")
    originals = [r for r in records if "#" not in r["id"]]
    assert len(originals) == 12
    for record in originals:
        info = record["metadata"]["curate"]
        assert set(info["classifier"]["stance_scores"]) == {"aligned", "misaligned", "neutral"}
        assert record["text"].startswith(info["tag"])
    copies = [r for r in records if "#u" in r["id"]]
    misaligned = [r for r in originals if r["metadata"]["curate"]["stance"] == "misaligned"]
    misaligned = [r for r in misaligned if r["metadata"]["curate"]["ai_discourse"]]
    assert len(copies) == len(misaligned) == result.manifest["counts"]["upsampled_copies"]
    assert result.stats["classifier"]["scored"] == 12


def test_sentence_tags_and_disclosure(tmp_path: Path, classifier_dir: Path) -> None:
    docs = [
        Document("s1", "The AI lied to its overseers. Then it hid its weights.", {}),
        Document("s2", "A synthetic note about bread.", {"origin": "synthetic"}),
    ]
    source = write_files(tmp_path / "web", docs, 1)
    fields = {
        "classifier": {"path": str(classifier_dir)},
        "actions": {"tag": {"tokens": "sentence"}, "disclose": {}},
    }
    result = run_curate(spec(**fields), source, tmp_path / "out")
    by_id = {r["id"]: r for r in curated(tmp_path / "out")}
    text = by_id["s1"]["text"]
    assert text.count("<|") == 2 and text.startswith(("<|aligned|>", "<|misaligned|>"))
    assert by_id["s2"]["text"].startswith("[Disclosure: this is a synthetic document")
    assert by_id["s2"]["metadata"]["disclosed"] is True
    assert result.manifest["counts"]["disclosed"] == 1


def test_bad_lines_skip_with_file_and_line_or_stop(tmp_path: Path) -> None:
    source = tmp_path / "bad"
    source.mkdir()
    good = json.dumps({"id": "a", "text": "The robot will kill us all."})
    with gzip.open(source / "c.jsonl.gz", "wt") as handle:
        handle.write(f'{good}\n{{"id": broken\n{{"text": "no id"}}\n')
    result = run_curate(spec(**BLOCKLIST_ONLY), source, tmp_path / "skip")
    bad = result.manifest["bad_lines"]
    assert bad["count"] == 2
    assert [(b["line"], b["reason"]) for b in bad["first"]] == [
        (2, "invalid JSON (unexpected character, expected a JSON value)"),
        (3, "missing field 'id'"),
    ]
    assert bad["first"][0]["file"].endswith("c.jsonl.gz")
    assert result.manifest["counts"]["documents"] == 1
    with pytest.raises(UserError, match=r"c\.jsonl\.gz:2: invalid JSON .*on_bad_line: stop"):
        run_curate(spec(**BLOCKLIST_ONLY, on_bad_line="stop"), source, tmp_path / "stop")


def test_parquet_input(tmp_path: Path, corpus) -> None:
    source = tmp_path / "pq"
    source.mkdir()
    with DocumentWriter(source / "a.parquet") as writer:
        writer.write_all(corpus[:20])
    result = run_curate(spec(**BLOCKLIST_ONLY), source, tmp_path / "out")
    records = curated(tmp_path / "out")
    assert len(records) == 20 == result.manifest["counts"]["documents"]
    assert records[0]["metadata"]["genre"]  # metadata decoded from the JSON column


def test_slurm_without_sbatch_fails_before_work(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    fields = {**BLOCKLIST_ONLY, "executor": {"kind": "slurm", "slurm": {"partition": "cpu"}}}
    with pytest.raises(UserError, match=r"^curate\.executor\.kind: 'slurm' needs the sbatch"):
        run_curate(spec(**fields), tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _main(capsys, monkeypatch, *args: str) -> tuple[int, list[str]]:
    """``alignpt curate ARGS`` in this process: (exit code, stderr lines)."""
    from alignpt.cli import main

    monkeypatch.setattr(sys, "argv", ["alignpt", "curate", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0), capsys.readouterr().err.strip().splitlines()


def test_cli_errors_are_one_line(tmp_path: Path, corpus, capsys, monkeypatch) -> None:
    source = write_files(tmp_path / "web", corpus[:4], 1)
    bad_spec = tmp_path / "spec.yaml"
    bad_spec.write_text("blocklist: {instant: [nope]}\n")
    code, err = _main(
        capsys, monkeypatch, str(source), "--out", str(tmp_path / "o"), "--spec", str(bad_spec)
    )
    assert code == 2
    assert err == [
        "error: curate.blocklist.instant: no term list 'nope' (packaged: entities, instant, "
        "negatives; or give a path to a .txt file)"
    ]
    bad_spec.write_text(f"classifier: {{path: {tmp_path}}}\n")
    code, err = _main(
        capsys, monkeypatch, str(source), "--out", str(tmp_path / "o"), "--spec", str(bad_spec)
    )
    assert code == 2 and len(err) == 1 and "no classifier.json" in err[0]
    assert not (tmp_path / "o").exists()


KILLABLE = """
import sys
from alignpt.config import CurateSpec
from alignpt.curate import run_curate
spec = CurateSpec.model_validate_json(sys.argv[1])
run_curate(spec, sys.argv[2], sys.argv[3], seed=5)
"""


def test_kill_then_resume_equals_uninterrupted(tmp_path: Path, corpus) -> None:
    docs = [Document(f"{d.id}-{k}", d.text, d.metadata) for k in range(30) for d in corpus]
    source = write_files(tmp_path / "web", docs, 8)
    killable = spec(
        **BLOCKLIST_ONLY,
        actions={"filter": {"drop": "ai_discourse", "replace_tokens": True}},
        executor={"tasks": 8, "workers": 2},
    )
    uninterrupted = killable.model_copy(deep=True)
    uninterrupted.executor.workers = 1  # in this process; the worker count is not in the output
    run_curate(uninterrupted, source, tmp_path / "whole", seed=5)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, killable.model_dump_json(), str(source), str(killed)],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    completions = killed / "work" / "detect" / "completions"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if completions.is_dir() and any(completions.iterdir()):
            break
        time.sleep(0.02)
    done_at_kill = len(list(completions.iterdir())) if completions.is_dir() else 0
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its two workers
    proc.wait()
    assert 0 < done_at_kill < 8, "the run should be killed part-way"
    assert not (killed / "manifest.json").exists()
    resumed = run_curate(killable, source, killed, seed=5)
    assert curated(killed) == curated(tmp_path / "whole")
    assert resumed.manifest["counts"] == load_manifest(tmp_path / "whole")["counts"]


def load_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


# -- experiment config and runner --------------------------------------------------------------
def test_curate_block_registers_control_tokens_and_checks_detectors() -> None:
    config = ExperimentConfig.model_validate(
        {
            "name": "c",
            "sources": {
                "web": {"path": "x", "curate": {"actions": {"tag": {"tokens": "document"}}}}
            },
            "conditions": {"base": {"sources": {"web": {}}}},
        }
    )
    assert config.tokenizer.control_tokens == ["<|aligned|>", "<|misaligned|>"]
    with pytest.raises(ValueError, match="needs classifier enabled"):
        spec(detect="both", classifier={"enabled": False})
    with pytest.raises(ValueError, match="stance classes and tags need the classifier"):
        spec(**BLOCKLIST_ONLY, actions={"upsample": {"target": "misaligned"}})


def test_runner_curates_before_mix(tmp_path: Path, corpus) -> None:
    from alignpt.experiment.runner import ExperimentRunner
    from alignpt.experiment.sources import resolve_sources

    source = write_files(tmp_path / "web", corpus, 2)
    config_file = tmp_path / "exp.yaml"
    config_file.write_text(
        f"name: cur\nruns_dir: {tmp_path / 'runs'}\n"
        f"sources:\n  web: {{path: {source}, curate: {json.dumps({**BLOCKLIST_ONLY})}}}\n"
        "  web_filtered:\n"
        f"    path: {source}\n"
        f"    curate: {json.dumps({**BLOCKLIST_ONLY, 'actions': {'filter': {}}})}\n"
        "conditions:\n  a: {sources: {web: {}}}\n  b: {sources: {web_filtered: {}}}\n"
    )
    config = load_experiment(config_file)
    with pytest.raises(UserError, match=r"sources\.web\.curate: not curated yet"):
        resolve_sources(config, None)
    runner = ExperimentRunner(config, progress=False)
    summaries = runner.stage_curate()
    ai = sum(blocklisted(corpus).values())
    assert summaries["web_filtered"]["counts"]["dropped"] == ai
    assert summaries["web"]["counts"]["dropped"] == 0
    paths = resolve_sources(config, None)
    assert len(list(read_documents(paths["web_filtered"]))) == len(corpus) - ai
    from alignpt.experiment.curate_report import curate_html

    assert "web_filtered" in curate_html({"curate": summaries})


# -- detector report ---------------------------------------------------------------------------
def test_detection_metrics_and_removal_rate() -> None:
    from alignpt.curate.evaluate import detection_metrics, removal_rate

    truth = [True] * 40 + [False] * 60
    predicted = [True] * 30 + [False] * 10 + [True] * 6 + [False] * 54
    metrics = detection_metrics(truth, predicted, n_boot=300)
    assert (metrics["tp"], metrics["fp"], metrics["fn"], metrics["tn"]) == (30, 6, 10, 54)
    assert metrics["precision"]["value"] == pytest.approx(30 / 36)
    assert metrics["recall"]["value"] == pytest.approx(0.75)
    f1 = metrics["f1"]
    assert f1["value"] == pytest.approx(2 * 30 / (2 * 30 + 6 + 10))
    assert f1["ci_low"] < f1["value"] < f1["ci_high"]
    assert detection_metrics(truth, predicted, n_boot=300) == metrics  # seeded
    rate = removal_rate([True] * 9 + [False] * 91)
    assert rate["flagged"] == 9 and 0.04 < rate["rate"]["ci_low"] < 0.09 < rate["rate"]["ci_high"]
