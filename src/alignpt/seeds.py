"""Seed derivation: every seed alignpt draws from the experiment's one ``seed`` comes from here.

A derived seed depends only on the base seed and names (never on paths, process ids or
Python's salted ``hash``), so the same config and seed give the same bytes on any machine.

``derive_seed(seed, *names)`` is the rule for any new stream. Older streams keep their
historical formulas (the offsets ``EVAL_ITEMS`` and ``HELDOUT_TEXT``, ``indexed_seed`` for
per-item samples) so that earlier runs reproduce bit for bit; they are named here, not
scattered as magic numbers.
"""

from __future__ import annotations

import zlib

import numpy as np

_SEED_RANGE = 1 << 31
EVAL_ITEMS = 7919  # offset of the eval-item generator's seed from the experiment seed
HELDOUT_TEXT = 104729  # offset of the held-out capability documents' generator seed


def stable_int(*parts: str) -> int:
    """A number from names that does not change between runs or machines (unlike ``hash``)."""
    return zlib.crc32("\x00".join(parts).encode("utf-8"))


def derive_seed(seed: int, *names: str) -> int:
    """The seed of the stream called ``names`` under base ``seed`` (e.g. a source's generator)."""
    return (seed * 1_000_003 + stable_int(*names)) % _SEED_RANGE


def offset_seed(seed: int, offset: int) -> int:
    """A stream with a fixed offset from the base seed (``EVAL_ITEMS``, ``HELDOUT_TEXT``)."""
    return seed + offset


def indexed_seed(seed: int, index: int, *, stride: int = 1) -> int:
    """The seed of the ``index``-th item of a per-item stream (e.g. one belief fact's samples).

    Historical formula (no modulus, unlike :func:`derive_seed`), kept so earlier belief runs
    reproduce; ``stride`` leaves room between items.
    """
    return seed * 1_000_003 + index * stride


def named_rng(seed: int, *names: str) -> np.random.Generator:
    """A numpy generator for the stream ``names`` (e.g. one condition's phase and source)."""
    return np.random.default_rng([seed, stable_int(*names)])


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator that orders one epoch of a data loader."""
    return np.random.default_rng([seed, epoch])
