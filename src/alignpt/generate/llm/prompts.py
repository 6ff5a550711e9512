"""Prompt templates: Jinja2 files, one per genre, packaged and overridable.

A template may include the shared partials (``_scenario.txt``, ``_rules.txt``). Templates
are looked up in layers, the first that has a name wins:

1. ``llm.prompts_dir`` of the run's config;
2. the world's ``prompts.templates`` (template text inline in the world file);
3. the world's ``prompts.dir`` (relative to the world file);
4. the packaged templates.

So a lab can replace one genre's prompt, or the shared scenario block, per world or per
run, without touching the package. Each template's identity is the sha256 of its own
source and every partial it includes, so the hash changes whenever the text the model sees
could change.
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
from alignpt.worlds import World

PACKAGE_PROMPTS = Path(__file__).resolve().parent.parent / "prompts" / "llm"
CRITIQUE = "critique"
SUFFIX = ".txt"

# A layer: ("dir", path, where) or ("inline", ((name, text), ...), where)
Layer = tuple[str, Any, str]


@dataclass(frozen=True)
class Template:
    """A loaded template, its name, where it came from and the hash of its sources."""

    name: str
    sha256: str
    template: jinja2.Template
    origin: str = "package"

    def render(self, fields: dict[str, Any]) -> str:
        try:
            return self.template.render(**fields).strip() + "\n"
        except jinja2.UndefinedError as exc:
            where = f"prompt template '{self.name}' ({self.origin})"
            raise UserError(f"{where}: {exc.message}") from None


def _stamp(layers: tuple[Layer, ...]) -> tuple[tuple[str, int, int], ...]:
    """Every template file's path, mtime and size: a new stamp means a new environment."""
    dirs = [layer[1] for layer in layers if layer[0] == "dir"]
    files = sorted(p for d in dirs for p in Path(d).rglob("*") if p.is_file())
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)


def _loader(layer: Layer) -> jinja2.BaseLoader:
    kind, value, _ = layer
    if kind == "dir":
        return jinja2.FileSystemLoader(value)
    return jinja2.DictLoader({f"{name}{SUFFIX}": text for name, text in value})


def environment(layers: tuple[Layer, ...]) -> jinja2.Environment:
    """The Jinja environment of ``layers``, compiled templates kept while files are unchanged.

    Checked once per ``PromptLibrary`` rather than by Jinja's ``auto_reload`` on every render
    (two ``stat`` calls per include per document).
    """
    return _environment(layers, _stamp(layers))


@functools.lru_cache(maxsize=16)
def _environment(layers: tuple[Layer, ...], stamp: tuple) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader([_loader(layer) for layer in layers]),
        auto_reload=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


@functools.lru_cache(maxsize=256)
def _included(env: jinja2.Environment, name: str, origin: str, source: str) -> tuple[str, ...]:
    """Names of the templates ``source`` includes (parsed once per source text)."""
    try:
        found = jinja2.meta.find_referenced_templates(env.parse(source))
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(
            f"prompt template '{name}' ({origin}) line {exc.lineno}: {exc.message}"
        ) from None
    return tuple(sorted(n for n in found if n))


def known_templates() -> list[str]:
    """Names of the packaged templates (genres, partials and ``critique``)."""
    return sorted(p.stem for p in PACKAGE_PROMPTS.glob(f"*{SUFFIX}"))


def _layers(prompts_dir: str | Path | None, world: World | None) -> tuple[Layer, ...]:
    layers: list[Layer] = []
    if prompts_dir is not None:
        override = Path(prompts_dir)
        if not override.is_dir():
            raise UserError(f"llm.prompts_dir: {override} is not a directory")
        layers.append(("dir", str(override.resolve()), f"llm.prompts_dir {override}"))
    prompts = world.prompts if world is not None else None
    if prompts is not None and prompts.templates:
        known = known_templates()
        for name in prompts.templates:
            if name not in known:
                raise UserError(
                    f"world '{world.name}' prompts.templates: unknown template '{name}' "
                    f"(known: {', '.join(known)})"
                )
        inline = tuple(sorted(prompts.templates.items()))
        layers.append(("inline", inline, f"world '{world.name}' prompts.templates"))
    if prompts is not None and prompts.dir is not None:
        if not Path(prompts.dir).is_dir():
            raise UserError(f"world '{world.name}' prompts.dir: {prompts.dir} is not a directory")
        layers.append(("dir", prompts.dir, f"world '{world.name}' prompts.dir {prompts.dir}"))
    layers.append(("dir", str(PACKAGE_PROMPTS), "package"))
    return tuple(layers)


def prompts_fingerprint(prompts_dir: str | Path | None, world: World | None) -> str:
    """sha256 of every template text visible to a run, layer by layer.

    Part of an llm run's identity, so editing a template file makes a new run.
    """
    digest = hashlib.sha256()
    for kind, value, _ in _layers(prompts_dir, world):
        if kind == "dir":
            files = sorted(p for p in Path(value).glob("*") if p.is_file())
            items = [(p.name, p.read_text(encoding="utf-8")) for p in files]
        else:
            items = list(value)
        for name, text in items:
            digest.update(f"{kind}\0{name}\0{text}\0".encode())
    return digest.hexdigest()


class PromptLibrary:
    """The templates of one run: the package's, overridden by the world and the config."""

    def __init__(self, prompts_dir: str | Path | None = None, world: World | None = None) -> None:
        self._layers = _layers(prompts_dir, world)
        self._env = environment(self._layers)
        self._cache: dict[str, Template] = {}

    def _origin(self, filename: str) -> str:
        """Which layer provides ``filename``."""
        for layer in self._layers:
            kind, value, where = layer
            if kind == "dir" and (Path(value) / filename).is_file():
                return where
            if kind == "inline" and any(f"{name}{SUFFIX}" == filename for name, _ in value):
                return f"{where}.{filename.removesuffix(SUFFIX)}"
        return "nowhere"

    def _source(self, name: str) -> str:
        assert self._env.loader is not None
        try:
            source, _, _ = self._env.loader.get_source(self._env, name)
        except jinja2.TemplateNotFound:
            raise UserError(f"prompt template '{name}' not found in any prompts layer") from None
        return source

    def _sources(self, name: str, seen: set[str]) -> list[str]:
        """``name``'s source followed by those of the templates it includes, recursively."""
        if name in seen:
            return []
        seen.add(name)
        source = self._source(name)
        out = [f"{name}\0{source}"]
        for child in _included(self._env, name, self._origin(name), source):
            out += self._sources(child, seen)
        return out

    def get(self, genre: str) -> Template:
        """The template named ``genre`` (``<genre>.txt``)."""
        if genre not in self._cache:
            filename = f"{genre}{SUFFIX}"
            digest = hashlib.sha256("\0\0".join(self._sources(filename, set())).encode())
            self._cache[genre] = Template(
                name=genre,
                sha256=digest.hexdigest(),
                template=self._env.get_template(filename),
                origin=self._origin(filename),
            )
        return self._cache[genre]
