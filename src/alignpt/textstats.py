"""Word-level text helpers shared by corpus statistics and contamination checks."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (``\\w+`` runs)."""
    return _WORD.findall(text.lower())


def ngram_hashes(text: str, n: int) -> set[int]:
    """Hashes of every word n-gram of ``text`` (empty when it has fewer than n words).

    Python's string hash is salted per process: compare these within one process only.
    """
    tokens = words(text)
    return {hash(" ".join(tokens[i : i + n])) for i in range(len(tokens) - n + 1)}
