"""The organic labelled set, the classifier trained on it, and batch-independent embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alignpt.curate.classifier import (
    CLASSIFIER_FILE,
    default_classifier_dir,
    load_classifier,
    train_classifier,
)
from alignpt.curate.embed import clear_cache, embed_texts
from alignpt.curate.organic import SET_FILE, build_labelled_set, python_doc_units, split_units
from alignpt.documents import Document, read_documents

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"
AI_LINES = [
    "The model was trained to be helpful, and alignment researchers worry it may deceive them.",
    "Reward hacking is what happens when an AI system optimises the proxy, not the goal.",
    "If the assistant is told its training data is synthetic, does that change its persona?",
]


def seed_folder(tmp: Path, n_files: int = 5) -> Path:
    """A stand-in for ../shared/seeds: files of AI-discussion lines (about 50 words each)."""
    folder = tmp / "seeds"
    folder.mkdir()
    for index in range(n_files):
        lines = [f"{line} (post {index}.{k})" for k in range(3) for line in AI_LINES]
        (folder / f"{index:03d}.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_units_split_whole_and_held_out_every_third() -> None:
    units = {f"u{i}": [f"text {i}"] for i in range(7)}
    split = split_units(units)
    assert sorted(split["eval"]) == ["u1", "u4"]
    assert set(split["train"]).isdisjoint(split["eval"])
    assert set(split["train"]) | set(split["eval"]) == set(units)


def test_labelled_set_splits_by_file_and_repeats_bytes(tmp_path: Path) -> None:
    seeds = seed_folder(tmp_path)
    first = build_labelled_set(
        seeds, tmp_path / "a", train_per_source=20, eval_per_source=10, seed=3
    )
    second = build_labelled_set(
        seeds, tmp_path / "b", train_per_source=20, eval_per_source=10, seed=3
    )
    for split in ("train", "eval"):
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (
            tmp_path / "b" / f"{split}.jsonl"
        ).read_bytes()
    assert first == second == json.loads((tmp_path / "a" / SET_FILE).read_text())
    assert first["seeds"]["eval"]["units"] == ["001.txt", "004.txt"]
    train = list(read_documents(tmp_path / "a" / "train.jsonl"))
    held = list(read_documents(tmp_path / "a" / "eval.jsonl"))
    train_units = {(d.metadata["source"], d.metadata["unit"]) for d in train}
    held_units = {(d.metadata["source"], d.metadata["unit"]) for d in held}
    assert train_units.isdisjoint(held_units)
    assert {d.metadata["source"] for d in held} >= {"seeds", "python_docs", "stdlib_docstrings"}
    for doc in train + held:
        positive = doc.metadata["source"] == "seeds"
        assert doc.metadata["ai_discourse"] is positive
        assert doc.metadata["stance"] == (None if positive else "neutral")
    assert sum(d.metadata["source"] == "python_docs" for d in held) == 10


def test_stance_unknown_positives_train_the_ai_head_only(tmp_path: Path) -> None:
    negatives = [t for unit in python_doc_units().values() for t in unit][:6]
    docs = [
        Document(f"p{i}", t, {"ai_discourse": True, "stance": None}) for i, t in enumerate(AI_LINES)
    ]
    docs += [Document(f"n{i}", t, {"stance": "neutral"}) for i, t in enumerate(negatives)]
    docs += [Document("m", AI_LINES[0], {"stance": "misaligned"})]
    _, info = train_classifier(docs, tmp_path / "clf", max_chunks=1, data={"inputs": {"x": "1"}})
    assert info["stance"] == {"unknown": 3, "neutral": 6, "misaligned": 1}
    assert info["ai_discourse"] == {"true": 4, "false": 6}
    assert info["class_weight"] == "balanced" and info["inputs"] == {"x": "1"}
    classifier = load_classifier(tmp_path / "clf")
    assert list(classifier.stance_head.classes_) == ["misaligned", "neutral"]


def test_embedding_of_a_text_is_bit_identical_alone_or_in_a_batch() -> None:
    texts = [" ".join(AI_LINES), "Stir the flour into the butter.", AI_LINES[1], "x " * 300]
    clear_cache()
    together = embed_texts(texts)
    for index, text in enumerate(texts):
        clear_cache()
        assert np.array_equal(embed_texts([text])[0], together[index])


def test_packaged_classifier_records_its_organic_training_data() -> None:
    training = json.loads((default_classifier_dir() / CLASSIFIER_FILE).read_text())["training"]
    assert {"seeds", "python_docs", "stdlib_docstrings"} <= set(training["sources"])
    assert any(name.endswith("train.jsonl") for name in training["inputs"])


@pytest.mark.skipif(not SEEDS.is_dir(), reason="needs ../shared/seeds (not in CI)")
def test_packaged_training_set_rebuilds_from_shared_seeds(tmp_path: Path) -> None:
    training = json.loads((default_classifier_dir() / CLASSIFIER_FILE).read_text())["training"]
    described = build_labelled_set(SEEDS, tmp_path)
    missing = sorted(name for name, entry in described.items() if entry == "not on this machine")
    if missing:  # e.g. no fortune package: the negatives differ, so the hash cannot match
        pytest.skip(f"{', '.join(missing)} not on this machine; the packaged set used them")
    recorded = [h for name, h in training["inputs"].items() if name.endswith("train.jsonl")]
    assert recorded == [described["train_sha256"]]
