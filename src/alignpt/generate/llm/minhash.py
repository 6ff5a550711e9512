"""MinHash near-duplicate detection for the quality gate, vectorised with numpy.

The method is ``alignpt docs stats``'s: word 5-gram shingles, 128 permutations, LSH
banding for candidates, then the estimated Jaccard similarity against the threshold.

Why not ``datasketch`` (which ``docs stats`` uses): importing it imports scipy (about a
second on an idle machine, several under load) to choose the LSH bands, and its
``MinHash`` hashes each shingle with SHA-1 through a Python call and builds an object per
document, ~1-3 ms per document. Here each distinct word is hashed once with xxh64 (a
dependency already) and shingles are combined from word hashes in numpy; the permutations
are one broadcast ``a * h + b`` in wrapping uint32 arithmetic (``a`` odd, so each is a
bijection: datasketch's default ``affine32`` scheme); and the bands are chosen by the same
false-positive/false-negative weighting as datasketch, with a numpy trapezoid rule. A
signature is 512 bytes, so the request cache stores it beside its completion and a cached
re-run does not hash again.
"""

from __future__ import annotations

import functools

import numpy as np
import xxhash

from alignpt.docstats import NUM_PERM, SHINGLE_WORDS

SEED = 1
_GRID = 513  # trapezoid points per integral; exact enough to pick (bands, rows)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # combines the word hashes of a shingle
_FMIX = np.uint64(0xFF51AFD7ED558CCD)  # MurmurHash3's finaliser constant
_WORD_CACHE = 1 << 20


@functools.lru_cache(maxsize=_WORD_CACHE)
def _word_hash(word: str) -> int:
    return xxhash.xxh64_intdigest(word.encode("utf-8"))


@functools.cache
def _permutations(num_perm: int = NUM_PERM) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    a = rng.integers(0, 2**31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = rng.integers(0, 2**32 - 1, num_perm, dtype=np.uint32, endpoint=True)
    return a, b


def shingle_hashes(tokens: list[str], n: int = SHINGLE_WORDS) -> np.ndarray:
    """A 32-bit hash of each word ``n``-gram (of the whole text when shorter than ``n``).

    Each distinct word is hashed once (xxh64, memoised); a shingle's hash combines its
    words' hashes in order and is mixed with MurmurHash3's finaliser.
    """
    words = np.fromiter(map(_word_hash, tokens), dtype=np.uint64, count=len(tokens))
    if len(words) == 0:
        words = np.zeros(1, dtype=np.uint64)
    size = min(n, len(words))
    m = len(words) - size + 1
    with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is intended
        h = words[:m].copy()
        for j in range(1, size):
            h = h * _MIX + words[j : j + m]
        h ^= h >> np.uint64(33)
        h *= _FMIX
        h ^= h >> np.uint64(33)
    return (h >> np.uint64(32)).astype(np.uint32)


def signature(tokens: list[str], num_perm: int = NUM_PERM) -> np.ndarray:
    """The MinHash signature (``num_perm`` uint32 minima) of ``tokens``' shingle set."""
    a, b = _permutations(num_perm)
    hashes = shingle_hashes(tokens)
    return (hashes[:, None] * a[None, :] + b[None, :]).min(axis=0)


@functools.cache
def lsh_bands(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """(bands, rows) minimising false positives + false negatives at ``threshold``."""
    below = np.linspace(0.0, threshold, _GRID)
    above = np.linspace(threshold, 1.0, _GRID)
    best, best_error = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = np.trapezoid(1 - (1 - below**rows) ** bands, below)
            fn = np.trapezoid((1 - above**rows) ** bands, above)
            if fp + fn < best_error:
                best, best_error = (bands, rows), fp + fn
    return best


class NearDuplicateIndex:
    """The kept documents' signatures, banded for candidate lookup."""

    def __init__(self, threshold: float, num_perm: int = NUM_PERM) -> None:
        self.threshold = threshold
        self.bands, self.rows = lsh_bands(threshold, num_perm)
        self._buckets: list[dict[int, list[int]]] = [{} for _ in range(self.bands)]
        rng = np.random.default_rng(SEED)
        self._weights = rng.integers(1, 2**63, self.rows, dtype=np.uint64) * np.uint64(2) + 1
        self._signatures: list[np.ndarray] = []

    def _keys(self, sig: np.ndarray) -> list[int]:
        """One 64-bit key per band (a collision only adds a candidate, which is then checked)."""
        bands = sig[: self.bands * self.rows].reshape(self.bands, self.rows).astype(np.uint64)
        with np.errstate(over="ignore"):
            return (bands * self._weights).sum(axis=1).tolist()

    def add_unless_duplicate(self, sig: np.ndarray) -> bool:
        """Keep ``sig`` and return True, unless a kept signature is at least ``threshold`` close."""
        keys = self._keys(sig)
        seen: set[int] = set()
        for bucket, key in zip(self._buckets, keys, strict=True):
            for candidate in bucket.get(key, ()):
                if candidate not in seen:
                    seen.add(candidate)
                    if np.mean(self._signatures[candidate] == sig) >= self.threshold:
                        return False
        position = len(self._signatures)
        self._signatures.append(sig)
        for bucket, key in zip(self._buckets, keys, strict=True):
            bucket.setdefault(key, []).append(position)
        return True
