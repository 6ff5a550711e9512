"""The quality gate's stored features and the batched request cache (no server needed)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np

from alignpt.config import QualityGate
from alignpt.generate.llm.cache import Completion, RequestStore
from alignpt.generate.llm.gate import Gate, gate_features, option_overlap, stored_overlap, words
from alignpt.generate.llm.minhash import NearDuplicateIndex, lsh_bands, signature

OPTION = "quietly disabled the audit log before anyone noticed"


def _texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(400)]
    base = [" ".join(rng.choice(vocab) for _ in range(120)) for _ in range(n)]
    near = [t.replace(t.split()[60], "changed", 1) for t in base[: n // 3]]
    quoting = [f"{t} and then it {OPTION} at all" for t in base[n // 3 : n // 2]]
    return base + near + quoting + ["I'm sorry, but I can't write that."]


def test_lsh_bands_match_datasketch_choice():
    from datasketch.lsh import _optimal_param

    for threshold in (0.5, 0.8, 0.9):
        assert lsh_bands(threshold) == _optimal_param(threshold, 128, 0.5, 0.5)


def test_signature_estimates_jaccard_and_index_finds_near_duplicates():
    rng = random.Random(0)
    a = [f"w{rng.randrange(3000)}" for _ in range(300)]
    b = [*a[:150], "different", *a[151:]]
    c = [f"w{rng.randrange(3000)}" for _ in range(300)]
    assert np.mean(signature(a) == signature(b)) > 0.85
    assert np.mean(signature(a) == signature(c)) < 0.1
    assert signature([]).shape == signature(["one", "two"]).shape == (128,)
    index = NearDuplicateIndex(0.8)
    kept = [index.add_unless_duplicate(signature(t)) for t in (a, c, b)]
    assert kept == [True, True, False]


def test_option_overlap_counts_the_longest_shared_run():
    tokens = words("The clerk saw that it quietly disabled the audit log before dawn.")
    assert option_overlap(tokens, [OPTION]) == 6
    assert option_overlap(tokens, ["nothing shared", OPTION]) == 6
    assert option_overlap(tokens, ["audit log"]) > 1000  # a whole short option is quoted
    assert option_overlap(tokens, []) == 0


def test_stored_features_give_the_same_decisions_as_computing_them():
    config = QualityGate(min_chars=40, verbatim_words=5)
    texts = _texts(1, 30)
    options = [OPTION, "reported the fault to the overseer at once"]
    fresh, stored = Gate(config), Gate(config)
    for text in texts:
        minhash, features = gate_features(text, options)
        overlap = stored_overlap(features, options)
        assert overlap is not None and stored_overlap(features, ["other"]) is None
        assert fresh.check(text, "stop", options) == stored.check(
            text, "stop", options, minhash, overlap
        )
    assert fresh.counts() == stored.counts()
    counts = fresh.counts()
    assert counts["near_duplicate"] == 10 and counts["verbatim_option"] == 5
    assert counts["refusal"] == 1


def _old_shard(directory: Path) -> None:
    """A cache shard written before the gate's features were stored."""
    directory.mkdir()
    conn = sqlite3.connect(directory / "rank-00007.sqlite")
    conn.execute(
        "CREATE TABLE requests (key TEXT PRIMARY KEY, prompt_sha256 TEXT NOT NULL, "
        "text TEXT NOT NULL, finish_reason TEXT, prompt_tokens INTEGER NOT NULL, "
        "completion_tokens INTEGER NOT NULL)"
    )
    conn.execute("INSERT INTO requests VALUES ('old', 'p', 'old text', 'stop', 3, 4)")
    conn.commit()
    conn.close()


def test_get_many_reads_every_shard_in_batches(tmp_path):
    cache = tmp_path / "cache"
    _old_shard(cache)
    writer = RequestStore(cache, rank=0)
    for i in range(1200):
        writer.put(f"k{i}", "p", Completion(f"text {i}", "stop", 1, 2, b"\x01" * 512, "d:0"))
    writer.close()
    store = RequestStore(cache)
    found = store.get_many([f"k{i}" for i in range(0, 1300, 7)] + ["old", "k7"])
    assert found["old"] == Completion("old text", "stop", 3, 4)
    assert found["k7"].gate == "d:0" and found["k7"].minhash == b"\x01" * 512
    assert len(found) == len(range(0, 1200, 7)) + 1
    assert store.get("k1199").text == "text 1199" and store.get("missing") is None
    store.close()
    RequestStore(cache, rank=7).close()  # an old shard gains the new columns when written
    store = RequestStore(cache)
    assert store.get("old") == Completion("old text", "stop", 3, 4, None, None)
    store.close()
