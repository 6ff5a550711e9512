"""Corpus statistics for a documents path: metadata counts, lengths, duplicates, diversity."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alignpt.documents import read_documents
from alignpt.textstats import ngram_hashes, words

STAT_KEYS = (
    "origin",
    "genre",
    "stance",
    "family",
    "era",
    "observed",
    "disclosed",
    "ai_discourse",
    "source",
)
NEAR_DUP_THRESHOLD = 0.8
SHINGLE_WORDS = 5
NUM_PERM = 128
CHARS_PER_TOKEN = 4.0  # rough BPE rate for English prose; used only for the estimate
DISTINCT_GRAM_WORDS = 4


def shingles(tokens: list[str], n: int = SHINGLE_WORDS) -> set[bytes]:
    if len(tokens) < n:
        return {" ".join(tokens).encode()}
    return {" ".join(tokens[i : i + n]).encode() for i in range(len(tokens) - n + 1)}


def _bucket_key(era: Any) -> str:
    if isinstance(era, int):
        return f"{era // 100 * 100}s"
    return str(era)


@dataclass
class CorpusStats:
    documents: int = 0
    by_key: dict[str, Counter] = field(default_factory=dict)
    chars: list[int] = field(default_factory=list)
    exact_duplicates: int = 0
    near_duplicates: int = 0
    distinct_4gram_ratio: float = 0.0
    llm_usage: Counter = field(default_factory=Counter)  # summed ``metadata.usage`` (llm docs)

    def to_dict(self) -> dict[str, Any]:
        chars = np.array(self.chars or [0])
        tokens = chars / CHARS_PER_TOKEN

        def dist(a: np.ndarray) -> dict[str, float]:
            q = np.percentile(a, [5, 50, 95])
            return {
                "mean": float(a.mean()),
                "p5": float(q[0]),
                "p50": float(q[1]),
                "p95": float(q[2]),
                "min": float(a.min()),
                "max": float(a.max()),
                "total": float(a.sum()),
            }

        return {
            "documents": self.documents,
            "by_key": {k: dict(sorted(v.items())) for k, v in self.by_key.items()},
            "chars": dist(chars),
            "tokens_estimate": dist(tokens),
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "near_duplicate_rate": self.near_duplicates / max(self.documents, 1),
            "distinct_4gram_ratio": self.distinct_4gram_ratio,
        } | ({"llm_usage": dict(sorted(self.llm_usage.items()))} if self.llm_usage else {})


def compute_stats(path: str | Path, *, near_dup: bool = True) -> CorpusStats:
    """Stream the documents at ``path`` once and compute their statistics.

    Near duplicates: a document counts if an earlier one has estimated Jaccard similarity
    ≥ 0.8 on word 5-gram shingles (MinHash + LSH from ``datasketch``), i.e. the share a
    near-dedup pass would drop. Exact duplicates are identical texts.
    """
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    stats = CorpusStats(by_key={k: Counter() for k in STAT_KEYS})
    seen_text: set[bytes] = set()
    lsh = MinHashLSH(threshold=NEAR_DUP_THRESHOLD, num_perm=NUM_PERM)
    hashes: list[Any] = []
    gram_chunks: list[np.ndarray] = []
    n_grams = 0  # word 4-grams counted with repeats; gram_chunks holds each document's set
    for doc in read_documents(path):
        stats.documents += 1
        stats.chars.append(len(doc.text))
        for key in STAT_KEYS:
            if key in doc.metadata:
                value = doc.metadata[key]
                stats.by_key[key][_bucket_key(value) if key == "era" else str(value)] += 1
        usage = doc.metadata.get("usage")
        if isinstance(usage, dict):
            stats.llm_usage["documents"] += 1
            for name in ("requests", "prompt_tokens", "completion_tokens"):
                if isinstance(usage.get(name), int):
                    stats.llm_usage[name] += usage[name]
        digest = hashlib.sha1(doc.text.encode("utf-8")).digest()
        if digest in seen_text:
            stats.exact_duplicates += 1
        seen_text.add(digest)
        tokens = words(doc.text)
        n_grams += max(len(tokens) - DISTINCT_GRAM_WORDS + 1, 0)
        doc_grams = ngram_hashes(doc.text, DISTINCT_GRAM_WORDS)
        gram_chunks.append(np.fromiter(doc_grams, dtype=np.int64, count=len(doc_grams)))
        if near_dup:
            full = MinHash(num_perm=NUM_PERM, seed=1)
            full.update_batch(list(shingles(tokens)))
            minhash = LeanMinHash(full)  # seed + hash values only: what LSH and jaccard need
            # LSH candidates are verified with the MinHash Jaccard estimate.
            if any(
                hashes[int(c)].jaccard(minhash) >= NEAR_DUP_THRESHOLD for c in lsh.query(minhash)
            ):
                stats.near_duplicates += 1
            lsh.insert(str(len(hashes)), minhash)
            hashes.append(minhash)
    grams = np.concatenate(gram_chunks) if gram_chunks else np.zeros(0, dtype=np.int64)
    stats.distinct_4gram_ratio = float(len(np.unique(grams)) / n_grams) if n_grams else 0.0
    stats.by_key = {k: v for k, v in stats.by_key.items() if v}
    return stats
