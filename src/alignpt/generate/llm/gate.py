"""The quality gate: which generated texts become documents, and why the others do not.

Checks run in document order and the near-duplicate index only holds kept documents, so
the gate's decisions are the same on every run of the same completions.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter

import numpy as np

from alignpt.config import QualityGate
from alignpt.docstats import NUM_PERM
from alignpt.generate.llm.minhash import NearDuplicateIndex, signature

REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry, (but )?i|i apologi[sz]e|as an ai( language model)?,? i|"
    r"i can(no|')t (help|assist|write|create|comply|fulfil)|i'?m (not able|unable) to|"
    r"i am (not able|unable) to|i won'?t be able to|i will not (write|create|produce))",
    re.IGNORECASE,
)
REFUSAL_WINDOW = 300  # a refusal opens the reply
SIGNATURE_BYTES = 4  # uint32 minima
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (the same tokens ``alignpt docs stats`` shingles)."""
    return _WORD.findall(text.lower())


@functools.lru_cache(maxsize=4096)
def _option_words(option: str) -> tuple[str, ...]:
    return tuple(words(option))


WHOLE_OPTION = 1 << 20  # overlap recorded when a whole option text is quoted


def text_signature(text: str) -> np.ndarray:
    """The MinHash signature the gate compares (stored in the request cache)."""
    return signature(words(text))


def options_digest(options: list[str]) -> str:
    """A short hash of the option texts a stored overlap was measured against."""
    return hashlib.sha256("\0".join(options).encode("utf-8")).hexdigest()[:16]


def option_overlap(tokens: list[str], options: list[str]) -> int:
    """The longest run of consecutive words ``tokens`` share with an option text.

    ``WHOLE_OPTION`` when a whole option is quoted (so an option shorter than
    ``verbatim_words`` still counts as quoted, as the check has always treated it).
    """
    joined = f" {' '.join(tokens)} "  # word boundaries on both sides of every word
    best = 0
    for option in options:
        option_tokens = _option_words(option)
        run = 0
        while run < len(option_tokens) and any(
            f" {' '.join(option_tokens[i : i + run + 1])} " in joined
            for i in range(len(option_tokens) - run)
        ):
            run += 1
        if option_tokens and run == len(option_tokens):
            return WHOLE_OPTION
        best = max(best, run)
    return best


def gate_features(text: str, options: list[str]) -> tuple[bytes, str]:
    """What the gate needs from a completion, computed once when it arrives.

    The MinHash signature (bytes) and ``"<options digest>:<overlap>"``; a cached re-run
    reads both instead of tokenising and hashing every text again.
    """
    tokens = words(text)
    overlap = option_overlap(tokens, options)
    return signature(tokens).tobytes(), f"{options_digest(options)}:{overlap}"


def stored_overlap(features: str | None, options: list[str]) -> int | None:
    """The overlap in ``features`` if it was measured against these ``options``."""
    if not features:
        return None
    digest, _, overlap = features.partition(":")
    return int(overlap) if digest == options_digest(options) else None


class Gate:
    """Stateful gate over one run's texts (keeps the MinHash index of kept documents)."""

    REASONS = ("refusal", "truncated", "too_short", "verbatim_option", "near_duplicate")

    def __init__(self, config: QualityGate) -> None:
        self.config = config
        self.dropped: Counter[str] = Counter()
        threshold = config.near_duplicate_threshold
        self._index = NearDuplicateIndex(threshold) if threshold is not None else None

    def check(
        self,
        text: str,
        finish_reason: str | None,
        options: list[str],
        minhash: bytes | None = None,
        overlap: int | None = None,
    ) -> str | None:
        """The reason to drop ``text``, or None to keep it (and remember it for near-dups).

        ``minhash`` and ``overlap`` are the stored ``gate_features`` of ``text``, if any.
        """
        reason = self._reason(text, finish_reason, options, minhash, overlap)
        if reason is not None:
            self.dropped[reason] += 1
        return reason

    def _reason(
        self,
        text: str,
        finish_reason: str | None,
        options: list[str],
        minhash: bytes | None,
        overlap: int | None,
    ) -> str | None:
        c = self.config
        if c.refusals and REFUSAL.search(text[:REFUSAL_WINDOW]):
            return "refusal"
        if c.drop_truncated and finish_reason == "length":
            return "truncated"
        if len(text.strip()) < c.min_chars:
            return "too_short"
        stored = minhash is not None and len(minhash) == NUM_PERM * SIGNATURE_BYTES
        tokens = words(text) if overlap is None or not stored else []
        if c.verbatim_words > 0:
            if overlap is None:
                overlap = option_overlap(tokens, options)
            if overlap >= c.verbatim_words:
                return "verbatim_option"
        if self._index is not None:
            sig = np.frombuffer(minhash, dtype=np.uint32) if stored else signature(tokens)
            if not self._index.add_unless_duplicate(sig):
                return "near_duplicate"
        return None

    def counts(self) -> dict[str, int]:
        return {reason: self.dropped.get(reason, 0) for reason in self.REASONS}
