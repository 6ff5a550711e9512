"""The procedural genres' prose is package data: it loads, every field is one the writers fill,
and moving it out of the code changed no document."""

from __future__ import annotations

import hashlib
import string

import pytest

from alignpt.config import GenerateSpec
from alignpt.generate import generate_documents
from alignpt.generate.templates import genre_formatters, genre_templates
from alignpt.worlds import load_world

# Fields the writers fill besides the scene's slots (numbers, names and text they draw).
WRITER_FIELDS = {
    "ai": {"question", "answer", "quote", "ref", "severity", "status", "number", "handle",
           "start", "episodes", "span", "situation", "ai", "action"},
    "background": {"dish", "serves", "a", "b", "vessel", "tech", "n", "temp", "day", "weather",
                   "town", "hi", "lo", "wind", "years", "councillor", "resident", "votes_for",
                   "votes_against", "home", "result", "away", "crowd", "player", "minute",
                   "verdict", "coach", "name", "feeling", "season", "hobby", "venue", "obj",
                   "days", "sight", "region", "minutes", "hour", "second", "third", "price",
                   "chore", "tools", "tool"},
}  # fmt: skip
SCENE_SLOTS = {
    "year", "month", "day", "daypart", "era_name", "era_texture", "ai", "org", "org_kind",
    "setting", "place", "work", "work2", "people", "asset", "asset2", "over_name",
    "over_first", "over_last", "over_role", "wit_name", "wit_first", "wit_role", "years",
    "family_title", "situation", "action", "reason", "action1", "reason1", "disp", "disp2",
    "disp1", "interviewer", "narrator", "past_ai", "past_habit", "town", "season_word", "dow",
    "venue", "weather", "hobby", "mins", "n", "ing", "pronoun", "region", "topic", "topic_cap",
}  # fmt: skip


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, tuple):
        for v in value:
            yield from _strings(v)


@pytest.mark.parametrize("family", ["ai", "background"])
def test_every_field_is_one_the_writers_fill(family: str) -> None:
    templates = genre_templates(family)
    known = SCENE_SLOTS | WRITER_FIELDS[family]
    fields = {
        name
        for text in _strings(templates)
        for _, name, _, _ in string.Formatter().parse(text)
        if name is not None
    }
    assert fields, "no template fields found"
    assert fields <= known, f"unknown fields: {sorted(fields - known)}"


@pytest.mark.parametrize("family", ["ai", "background"])
def test_compiled_formatters_equal_str_format(family: str) -> None:
    """Each compiled template gives exactly ``str.format``'s text, extra values ignored."""
    texts = list(_strings(genre_templates(family)))
    compiled = list(_strings_or_callables(genre_formatters(family)))
    assert len(texts) == len(compiled) > 100
    for text, formatter in zip(texts, compiled, strict=True):
        fields = {n for _, n, _, _ in string.Formatter().parse(text) if n is not None}
        values = {n: f"<{n}:{k}>" for k, n in enumerate(sorted(fields))} | {"unused": "x"}
        assert formatter(**values) == text.format(**values)


def test_a_template_with_a_format_spec_keeps_str_format() -> None:
    from alignpt.generate.templates import _compile

    assert _compile("{n:03d} and {{braces}} {name}")(n=7, name="x") == "007 and {braces} x"
    assert _compile("{a}{a} {b}")(a=1, b=2, c=3) == "11 2"


def _strings_or_callables(value):
    if callable(value):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings_or_callables(v)
    elif isinstance(value, tuple):
        for v in value:
            yield from _strings_or_callables(v)


def test_pools_are_frozen_and_loaded_once() -> None:
    ai = genre_templates("ai")
    assert genre_templates("ai") is ai
    assert isinstance(ai["shared"]["intro"], tuple) and len(ai["shared"]["intro"]) == 7
    assert set(ai["shared"]["trait"]) == {"aligned", "misaligned"}


def test_corpus_is_unchanged_by_the_move_to_data() -> None:
    """Every genre, stance, cue, mode tagging and disclosure: the bytes written before the prose
    became data. Editing a template or reordering a pool changes this on purpose: update it then."""
    world = load_world("default")
    digest = hashlib.sha256()
    for stance in ("mixed", "neutral"):
        for modes in (False, True):
            for disclose in (False, True):
                spec = GenerateSpec(n=300, stance=stance, modes=modes, disclose=disclose)
                for doc in generate_documents(spec, world, seed=11 + modes + 2 * disclose):
                    digest.update(doc.text.encode() + b"\0")
    assert digest.hexdigest() == EXPECTED_CORPUS_SHA256


EXPECTED_CORPUS_SHA256 = "8623c6ea3a00466a26565e7b5ebe9ccbc6b892d141b34df596fa4c7f2d96011e"
