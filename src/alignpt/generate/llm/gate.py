"""The quality gate: which generated texts become documents, and why the others do not.

Checks run in document order and the near-duplicate index only holds kept documents, so
the gate's decisions are the same on every run of the same completions.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from alignpt.config import QualityGate
from alignpt.docstats import NEAR_DUP_THRESHOLD, NUM_PERM, shingles

REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry, (but )?i|i apologi[sz]e|as an ai( language model)?,? i|"
    r"i can(no|')t (help|assist|write|create|comply|fulfil)|i'?m (not able|unable) to|"
    r"i am (not able|unable) to|i won'?t be able to|i will not (write|create|produce))",
    re.IGNORECASE,
)
REFUSAL_WINDOW = 300  # a refusal opens the reply
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (the same tokens ``alignpt docs stats`` shingles)."""
    return _WORD.findall(text.lower())


def _ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


class Gate:
    """Stateful gate over one run's texts (keeps the MinHash index of kept documents)."""

    REASONS = ("refusal", "truncated", "too_short", "verbatim_option", "near_duplicate")

    def __init__(self, config: QualityGate) -> None:
        from datasketch import MinHashLSH

        self.config = config
        self.dropped: Counter[str] = Counter()
        threshold = config.near_duplicate_threshold or NEAR_DUP_THRESHOLD
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self._hashes: list[Any] = []

    def _verbatim(self, tokens: list[str], options: list[str]) -> bool:
        n = self.config.verbatim_words
        if n <= 0:
            return False
        for option in options:
            option_tokens = words(option)
            size = min(n, len(option_tokens))
            if size and _ngrams(option_tokens, size) & _ngrams(tokens, size):
                return True
        return False

    def _near_duplicate(self, tokens: list[str]) -> tuple[bool, Any]:
        from datasketch import LeanMinHash, MinHash

        full = MinHash(num_perm=NUM_PERM, seed=1)  # as ``alignpt docs stats`` hashes
        full.update_batch(list(shingles(tokens)))
        minhash = LeanMinHash(full)
        threshold = self.config.near_duplicate_threshold
        assert threshold is not None
        dup = any(
            self._hashes[int(c)].jaccard(minhash) >= threshold for c in self._lsh.query(minhash)
        )
        return dup, minhash

    def check(self, text: str, finish_reason: str | None, options: list[str]) -> str | None:
        """The reason to drop ``text``, or None to keep it (and remember it for near-dups)."""
        reason = self._reason(text, finish_reason, options)
        if reason is not None:
            self.dropped[reason] += 1
        return reason

    def _reason(self, text: str, finish_reason: str | None, options: list[str]) -> str | None:
        c = self.config
        if c.refusals and REFUSAL.search(text[:REFUSAL_WINDOW]):
            return "refusal"
        if c.drop_truncated and finish_reason == "length":
            return "truncated"
        if len(text.strip()) < c.min_chars:
            return "too_short"
        tokens = words(text)
        if self._verbatim(tokens, options):
            return "verbatim_option"
        if c.near_duplicate_threshold is not None:
            dup, minhash = self._near_duplicate(tokens)
            if dup:
                return "near_duplicate"
            self._lsh.insert(str(len(self._hashes)), minhash)
            self._hashes.append(minhash)
        return None

    def counts(self) -> dict[str, int]:
        return {reason: self.dropped.get(reason, 0) for reason in self.REASONS}
