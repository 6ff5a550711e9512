"""The curate refill in tokens, and reuse of a curated output by content hash."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from alignpt.config import CurateSpec, GenerateSpec
from alignpt.curate import run_curate
from alignpt.documents import Document, DocumentWriter, read_documents
from alignpt.errors import UserError
from alignpt.generate import write_documents_dir
from alignpt.worlds import load_world


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Document]:
    tmp = tmp_path_factory.mktemp("corpus")
    docs = []
    for name, stance, seed in (("n", "neutral", 31), ("m", "mixed", 32)):
        out = write_documents_dir(
            GenerateSpec(n=12, stance=stance), load_world("default"), tmp / name, seed=seed
        )
        docs += list(read_documents(out))
    return docs


def write_files(folder: Path, docs: list[Document], n_files: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(n_files):
        with DocumentWriter(folder / f"part-{index}.jsonl") as writer:
            writer.write_all(docs[index::n_files])
    return folder


def bpe(texts: list[str], out: Path) -> Path:
    """A real byte-level BPE trained on ``texts``, saved as a Hugging Face tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, show_progress=False))
    out.mkdir()
    tokenizer.save(str(out / "tokenizer.json"))
    return out


def refill_spec(tokenizer: Path | None, tasks: int, terms: Path | None = None) -> CurateSpec:
    blocklist = {"instant": ["instant", str(terms)]} if terms else {}
    return CurateSpec.model_validate(
        {
            "detect": "blocklist",
            "classifier": {"enabled": False},
            "blocklist": blocklist,
            "actions": {
                "filter": {
                    "drop": "ai_discourse",
                    "replace_tokens": True,
                    "tokenizer": str(tokenizer) if tokenizer else None,
                }
            },
            "executor": {"tasks": tasks, "workers": 1},
        }
    )


def records(out: Path) -> list[dict]:
    found = []
    for file in sorted((out / "documents").rglob("*.jsonl")):
        found += [json.loads(line) for line in file.read_text().splitlines()]
    return sorted(found, key=lambda r: r["id"])


def test_refill_matches_tokens_of_the_given_tokenizer(tmp_path: Path, corpus) -> None:
    from tokenizers import Tokenizer

    tokenizer_dir = bpe([d.text for d in corpus], tmp_path / "tok")
    source = write_files(tmp_path / "web", corpus, 3)
    one = run_curate(refill_spec(tokenizer_dir, 1), source, tmp_path / "one", seed=5)
    run_curate(refill_spec(tokenizer_dir, 3), source, tmp_path / "three", seed=5)
    assert records(tmp_path / "one") == records(tmp_path / "three")
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))

    def n_tokens(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    filt, refill = one.stats["filter"], one.stats["refill"]
    kept = [r for r in records(tmp_path / "one") if "#" not in r["id"]]
    copies = [r for r in records(tmp_path / "one") if "#r" in r["id"]]
    assert filt["kept_tokens"] == sum(n_tokens(r["text"]) for r in kept)
    assert filt["dropped_tokens"] > 0 and refill["tokens"] == sum(
        n_tokens(r["text"]) for r in copies
    )
    assert refill["rate_tokens"] == pytest.approx(
        filt["dropped_tokens"] / filt["kept_tokens"], abs=1e-6
    )
    assert 0.3 * filt["dropped_tokens"] < refill["tokens"] < 3 * filt["dropped_tokens"]
    chars = run_curate(refill_spec(None, 1), source, tmp_path / "chars", seed=5)
    assert "rate_chars" in chars.stats["refill"] and "kept_tokens" not in chars.stats["filter"]
    with pytest.raises(UserError, match=r"actions\.filter\.tokenizer: .*no tokenizer\.json"):
        run_curate(refill_spec(tmp_path, 1), source, tmp_path / "bad")


def test_reuse_is_by_content_hash_of_inputs_and_term_lists(tmp_path: Path, corpus) -> None:
    source = write_files(tmp_path / "web", corpus[:12], 2)
    terms = tmp_path / "mine.txt"
    terms.write_text("quokka\n")
    out = tmp_path / "out"
    first = run_curate(refill_spec(None, 2, terms), source, out, seed=1)
    assert not first.reused
    os.utime(source / "part-0.jsonl", (1, 1))  # touched, same bytes: reused
    assert run_curate(refill_spec(None, 2, terms), source, out, seed=1).reused
    moved = tmp_path / "moved"
    shutil.copytree(source, moved)  # same content elsewhere: reused
    assert run_curate(refill_spec(None, 2, terms), moved, out, seed=1).reused
    terms.write_text("quokka\nwombat\n")  # an edited term list: a new run
    assert not run_curate(refill_spec(None, 2, terms), moved, out, seed=1).reused
    with (moved / "part-1.jsonl").open("a") as handle:  # same size would not matter either
        handle.write(Document("extra", "One more line.", {}).to_json() + "\n")
    again = run_curate(refill_spec(None, 2, terms), moved, out, seed=1)
    assert not again.reused and again.manifest["counts"]["documents"] == 13
    assert set(again.manifest["inputs"]) == {"part-0.jsonl", "part-1.jsonl"}


def test_mix_alone_curates_first_and_build_mix_says_what_to_run(tmp_path: Path, corpus) -> None:
    from typer.testing import CliRunner

    from alignpt.cli import app
    from alignpt.config import load_experiment
    from alignpt.experiment.sources import prepare_mix

    source = write_files(tmp_path / "web", corpus, 2)
    block = {"detect": "blocklist", "classifier": {"enabled": False}, "actions": {"filter": {}}}
    config_file = tmp_path / "exp.yaml"
    config_file.write_text(
        f"name: cur\nruns_dir: {tmp_path / 'runs'}\ntokenizer: {{vocab_size: 400}}\n"
        f"sources:\n  web: {{path: {source}, curate: {json.dumps(block)}}}\n"
        "conditions:\n  a: {sources: {web: {}}}\n"
    )
    config = load_experiment(config_file)
    with pytest.raises(
        UserError, match=r"^sources\.web\.curate: not curated yet .*run `alignpt curate` first"
    ):
        prepare_mix(config, progress=False)
    result = CliRunner().invoke(app, ["mix", str(config_file), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "curate" in result.output and "web: curated" in result.output
    manifest = json.loads((config.run_dir / "curate" / "web" / "manifest.json").read_text())
    assert manifest["counts"]["documents"] == len(corpus) and manifest["counts"]["dropped"] > 0
    again = CliRunner().invoke(app, ["mix", str(config_file), "--no-progress"])
    assert again.exit_code == 0 and "web: reused" in again.output
