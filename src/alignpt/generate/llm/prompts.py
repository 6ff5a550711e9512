"""Prompt templates: Jinja2 files, one per genre, packaged and overridable by a directory.

A template may include the shared partials (``_scenario.txt``, ``_rules.txt``); a
directory given as ``llm.prompts_dir`` is searched first, so a lab can replace one genre's
prompt, or the shared scenario block, without touching the package. Each template's
identity is the sha256 of its own source and every partial it includes, so the hash
changes whenever the text the model sees could change.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from alignpt.errors import UserError

PACKAGE_PROMPTS = Path(__file__).resolve().parent.parent / "prompts" / "llm"
CRITIQUE = "critique"


@dataclass(frozen=True)
class Template:
    """A loaded template, its name and the hash of every source it is made of."""

    name: str
    sha256: str
    template: jinja2.Template

    def render(self, fields: dict[str, Any]) -> str:
        try:
            return self.template.render(**fields).strip() + "\n"
        except jinja2.UndefinedError as exc:
            raise UserError(f"prompt template '{self.name}': {exc.message}") from None


def _stamp(search_path: tuple[str, ...]) -> tuple[tuple[str, int, int], ...]:
    """Every template file's path, mtime and size: a new stamp means a new environment."""
    files = sorted(p for d in search_path for p in Path(d).rglob("*") if p.is_file())
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)


def environment(search_path: tuple[str, ...]) -> jinja2.Environment:
    """The Jinja environment of ``search_path``, compiled templates kept while files are unchanged.

    Checked once per ``PromptLibrary`` rather than by Jinja's ``auto_reload`` on every render
    (two ``stat`` calls per include per document).
    """
    return _environment(search_path, _stamp(search_path))


@functools.lru_cache(maxsize=16)
def _environment(search_path: tuple[str, ...], stamp: tuple) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(search_path)),
        auto_reload=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


@functools.lru_cache(maxsize=256)
def _included(env: jinja2.Environment, name: str, source: str) -> tuple[str, ...]:
    """Names of the templates ``source`` includes (parsed once per source text)."""
    try:
        found = jinja2.meta.find_referenced_templates(env.parse(source))
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"prompt template '{name}' line {exc.lineno}: {exc.message}") from None
    return tuple(sorted(n for n in found if n))


class PromptLibrary:
    """The templates of one run (package files, overridden by ``prompts_dir``)."""

    def __init__(self, prompts_dir: str | Path | None = None) -> None:
        paths = [PACKAGE_PROMPTS]
        if prompts_dir is not None:
            override = Path(prompts_dir)
            if not override.is_dir():
                raise UserError(f"llm.prompts_dir: {override} is not a directory")
            paths.insert(0, override.resolve())
        self._env = environment(tuple(str(p) for p in paths))
        self._cache: dict[str, Template] = {}

    def _source(self, name: str) -> str:
        assert self._env.loader is not None
        try:
            source, _, _ = self._env.loader.get_source(self._env, name)
        except jinja2.TemplateNotFound:
            raise UserError(f"prompt template '{name}' not found") from None
        return source

    def _sources(self, name: str, seen: set[str]) -> list[str]:
        """``name``'s source followed by those of the templates it includes, recursively."""
        if name in seen:
            return []
        seen.add(name)
        source = self._source(name)
        out = [f"{name}\0{source}"]
        for child in _included(self._env, name, source):
            out += self._sources(child, seen)
        return out

    def get(self, genre: str) -> Template:
        """The template named ``genre`` (``<genre>.txt``)."""
        if genre not in self._cache:
            filename = f"{genre}.txt"
            digest = hashlib.sha256(
                "\0\0".join(self._sources(filename, set())).encode()
            ).hexdigest()
            self._cache[genre] = Template(
                name=genre, sha256=digest, template=self._env.get_template(filename)
            )
        return self._cache[genre]
