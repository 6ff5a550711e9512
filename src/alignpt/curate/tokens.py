"""Text size for the token refill: tokens of a given tokenizer, or characters without one.

The refill repeats retained documents until they make up for the dropped ones. It matches
tokens of ``filter.tokenizer`` (an existing Hugging Face tokenizer: a directory holding
``tokenizer.json``, or that file). An experiment whose ``tokenizer.path`` is set passes that
tokenizer, so the refill matches exactly the tokens the mix will count. Without one, the
refill matches characters: the experiment's default tokenizer is a BPE the mix *trains on the
curated output*, so its token counts do not exist when the refill is drawn.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from alignpt.errors import UserError

TOKENIZER_FILE = "tokenizer.json"


def tokenizer_file(ref: str | Path) -> Path:
    """The ``tokenizer.json`` that ``ref`` names (a directory or the file itself)."""
    path = Path(ref)
    return path / TOKENIZER_FILE if path.is_dir() else path


@functools.lru_cache(maxsize=2)
def _load(file: str) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(file)


def load_tokenizer(ref: str | Path, where: str = "curate.actions.filter.tokenizer") -> Any:
    """The ``tokenizers.Tokenizer`` at ``ref``, or one clear line."""
    file = tokenizer_file(ref)
    if not file.is_file():
        raise UserError(f"{where}: {ref}: no {TOKENIZER_FILE} (give a Hugging Face tokenizer)")
    try:
        return _load(str(file))
    except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
        raise UserError(f"{where}: {file}: not a readable tokenizer ({exc})") from None


class TextSize:
    """``size(text)``: tokens of the tokenizer (special tokens not added), else characters."""

    def __init__(self, tokenizer: str | None) -> None:
        self.tokenizer = tokenizer
        self.unit = "tokens" if tokenizer else "chars"

    def size(self, text: str) -> int:
        if self.tokenizer is None:
            return len(text)
        return len(load_tokenizer(self.tokenizer).encode(text, add_special_tokens=False).ids)
