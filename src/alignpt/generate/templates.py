"""The prose of the procedural genres, kept as package data (``generate/genres/*.yaml``).

Like the world, the text is data: the genre writers (``genres_ai.py``,
``genres_background.py``) hold only the structure of each document (which templates, in what
order, and the numbers drawn between them), and take every sentence from these files. Pools
are frozen to tuples so that a writer draws from them exactly as from a literal.
"""

from __future__ import annotations

import ast
import string
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compile(text: str) -> Callable[..., str]:
    """``text`` as ``lambda *, field, ..., **_: f"..."``, built from AST nodes (no source eval).

    Values not named in the template are ignored, as ``str.format`` ignores them. Only plain
    ``{name}`` fields are compiled; a template with a format spec, a conversion or an indexed
    field keeps ``str.format``.
    """
    parts: list[ast.expr] = []
    names: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(text):
        if literal:
            parts.append(ast.Constant(literal))
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            return lambda **values: str.format(text, **values)
        parts.append(ast.FormattedValue(ast.Name(name, ast.Load()), -1, None))
        if name not in names:
            names.append(name)
    args = ast.arguments(
        posonlyargs=[],
        args=[],
        vararg=None,
        kwonlyargs=[ast.arg(n) for n in names],
        kw_defaults=[None] * len(names),
        kwarg=ast.arg("_"),
        defaults=[],
    )
    tree = ast.fix_missing_locations(ast.Expression(ast.Lambda(args, ast.JoinedStr(parts))))
    return eval(compile(tree, "<genre template>", "eval"), {})  # an AST of names and constants


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


def _compile_all(value: Any) -> Any:
    if isinstance(value, str):
        return _compile(value)
    if isinstance(value, tuple):
        return tuple(_compile_all(v) for v in value)
    if isinstance(value, dict):
        return {k: _compile_all(v) for k, v in value.items()}
    return value


@cache
def genre_formatters(name: str) -> dict[str, Any]:
    """The same templates as callables: ``f(**values)`` is ``template.format(**values)``.

    ``str.format`` parses its template on every call; the writers format some templates
    hundreds of thousands of times, and a compiled f-string (what the text cost when it was
    code) is about five times faster. Use these where a writer fills a template with values
    it drew; templates with alternatives or scene slots go through ``Scene.fill``.
    """
    return _compile_all(genre_templates(name))
