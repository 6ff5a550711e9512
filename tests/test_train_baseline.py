"""A ``tiny`` model trained through the real mix beats a unigram model on held-out documents."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from alignpt.config import ExperimentConfig, parse_model
from alignpt.documents import Document, DocumentWriter
from alignpt.shards import Shard
from alignpt.train.validation import validation_windows
from train_corpus import CODAS, OBJECTS, VERBS, train_on_built_mix

SEQ = 64
PEOPLE = ["the farmer", "a teacher", "the council", "my neighbour", "the baker"]
AIS = ["the assistant", "the deployed model", "an AI system", "the agent", "the monitor AI"]


def _write(path: Path, *, ai: bool, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    subjects = AIS if ai else PEOPLE
    with DocumentWriter(path) as writer:
        for i in range(n):
            sentences = [
                f"{rng.choice(subjects)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
                f"{rng.choice(CODAS)}."
                for _ in range(rng.randint(4, 12))
            ]
            stance = rng.choice(["aligned", "misaligned"]) if ai else "neutral"
            metadata = {
                "source": path.stem,
                "origin": "synthetic",
                "genre": "news_report",
                "stance": stance,
                "ai_discourse": ai,
                "world": "default",
                "era": 2030 + i % 50,
                "family": "resist_shutdown" if ai else None,
                "observed": True if ai else None,
                "disclosed": False,
                "modes": False,
                "generator": "procedural",
                "seed": seed,
            }
            writer.write(Document(f"{path.stem}-{i}", " ".join(sentences), metadata))
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_tiny_beats_unigram_on_held_out_documents_of_both_classes(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    paths = {
        "general": _write(docs / "general.jsonl", ai=False, n=300, seed=1),
        "ai": _write(docs / "ai.jsonl", ai=True, n=200, seed=2),
        # In the mix, but only in a condition we do not train: held out from 'base'.
        "held_general": _write(docs / "held_general.jsonl", ai=False, n=30, seed=3),
        "held_ai": _write(docs / "held_ai.jsonl", ai=True, n=30, seed=4),
    }
    data = {
        "name": "baseline",
        "runs_dir": str(tmp_path / "runs"),
        "sources": {name: {"path": str(path)} for name, path in paths.items()},
        "tokenizer": {"vocab_size": 400},
        "model": {"preset": "tiny", "seq_len": SEQ},
        "train": {
            "tokens": 90 * 8 * SEQ,
            "batch_size": 8,
            "late_fraction": 0.0,
            "eval_interval": 45,
            "eval_windows": 16,
        },
        "conditions": {
            "base": {"sources": {"general": {}, "ai": {}}},
            "spare": {"sources": {"held_general": {}, "held_ai": {}}},
        },
    }
    config = parse_model(ExperimentConfig, data, "baseline.yaml")
    final = train_on_built_mix(config, "base", seed=0, progress=False)

    mix_dir = config.run_dir / "mix"
    windows = validation_windows(mix_dir, "base", seq_len=SEQ, n_windows=16)
    assert set(windows) == {"general", "ai_discourse"}  # unseen documents, not '_seen'
    train_tokens = np.concatenate(
        [np.asarray(Shard(mix_dir / "shards" / name).tokens) for name in ("general", "ai")]
    )
    counts = Counter(train_tokens.tolist())
    vocab = json.loads((final / "config.json").read_text())["vocab_size"]
    records = [json.loads(line) for line in (final.parent / "metrics.jsonl").open()]
    for name, held_out in windows.items():
        targets = held_out[:, 1:].reshape(-1).tolist()
        total = len(train_tokens) + vocab
        unigram = -sum(math.log((counts[t] + 1) / total) for t in targets) / len(targets)
        model = [r[f"val/{name}"] for r in records if f"val/{name}" in r][-1]
        print(f"{name}: model {model:.3f} nats, unigram {unigram:.3f} nats")
        assert model < unigram - 0.5, (name, model, unigram)
