"""The prose of the procedural genres, kept as package data (``generate/genres/*.yaml``).

Like the world, the text is data: the genre writers (``genres_ai.py``,
``genres_background.py``) hold only the structure of each document (which templates, in what
order, and the numbers drawn between them), and take every sentence from these files. Pools
are frozen to tuples so that a writer draws from them exactly as from a literal.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


@cache
def genre_templates(name: str) -> dict[str, Any]:
    """The templates of one genre family (``ai`` or ``background``), loaded once."""
    text = resources.files("alignpt.generate").joinpath("genres", f"{name}.yaml").read_text("utf-8")
    return _freeze(yaml.load(text, Loader=_LOADER))
