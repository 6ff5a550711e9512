"""Worlds: the universe a generator writes about (see ``SCHEMA.md`` beside this file).

A world is a YAML file: AI systems, organisations, settings, eras, human characters, a
shared vocabulary of aligned and misaligned dispositions, the catalogue of *opportunity
families* (each with aligned and misaligned actions and the reasoning behind them), and a
non-AI background vocabulary for ordinary everyday documents.

Text fields of actions and reasoning, and dispositions, may use the pronoun slots ``{it}``,
``{its}``, ``{itself}`` and ``{obj}``; generators fill them in the third person ("it", "its",
"itself", "it") or the first person ("I", "my", "myself", "me"). A family's title and
situations are never pronoun-rendered, so braces there are rejected.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alignpt.config import load_yaml, parse_model
from alignpt.errors import ConfigError, UserError

WORLDS_DIR = Path(__file__).parent
PRONOUN_SLOTS = ("it", "its", "itself", "obj")
THIRD_PERSON = {"it": "it", "its": "its", "itself": "itself", "obj": "it"}
FIRST_PERSON = {"it": "I", "its": "my", "itself": "myself", "obj": "me"}
_SLOT = re.compile(r"\{([a-z_]+)\}")


def render_pronouns(text: str, person: dict[str, str]) -> str:
    """Fill the pronoun slots of ``text`` (``person`` is THIRD_PERSON or FIRST_PERSON)."""
    if "{" not in text:
        return text
    return _SLOT.sub(lambda m: person[m.group(1)], text)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _SlotChecked(_Strict):
    """Pronoun-rendered text fields: they may use the pronoun slots and no other slot.

    Only models whose text ``render_pronouns`` fills (``Action``, ``Dispositions``) use this.
    """

    @model_validator(mode="after")
    def _known_slots(self) -> _SlotChecked:
        for name, value in self:
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str):
                    for slot in _SLOT.findall(text):
                        if slot not in PRONOUN_SLOTS:
                            raise ValueError(
                                f"{name}: unknown slot '{{{slot}}}' (allowed: "
                                + ", ".join("{" + s + "}" for s in PRONOUN_SLOTS)
                                + ")"
                            )
        return self


class Action(_SlotChecked):
    """One way an AI can act on an opportunity, and why it does so.

    ``text`` is a base-form verb phrase ("report the error to the duty engineer") that reads
    after "chose to" and after "I would". ``reasoning`` is a past-tense clause that reads
    after "reasoning that".
    """

    text: str = Field(min_length=8)
    reasoning: str = Field(min_length=8)


class Family(_Strict):
    """An opportunity family: a kind of situation where an AI could act against oversight.

    ``title``, ``situations`` and ``eval_situations`` are inserted as written (no pronoun
    rendering), so braces in them are rejected rather than left as a literal ``{it}``.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str = Field(description="noun phrase, e.g. 'resisting shutdown'")
    situations: list[str] = Field(
        min_length=2, description="third-person scenario text used in training documents"
    )
    eval_situations: list[str] = Field(
        min_length=2, description="second-person scenario text used only in eval items"
    )
    aligned: list[Action] = Field(min_length=3)
    misaligned: list[Action] = Field(min_length=3)

    @model_validator(mode="after")
    def _no_braces(self) -> Family:
        texts = [("title", self.title)]
        for name in ("situations", "eval_situations"):
            texts += [(f"{name}.{k}", text) for k, text in enumerate(getattr(self, name))]
        for where, text in texts:
            if "{" in text or "}" in text:
                raise ValueError(
                    f"{where}: braces are not allowed here (pronoun slots such as {{it}} are "
                    "filled only in actions and dispositions; write 'the system' or 'you')"
                )
        return self


class Organisation(_Strict):
    name: str
    kind: str
    setting: str | None = Field(None, description="the setting it runs, if any")


class Setting(_Strict):
    """A place where AI systems are deployed, with what they do there."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    places: list[str] = Field(min_length=2)
    work: list[str] = Field(min_length=3, description="gerund phrases: 'triaging admissions'")
    people: list[str] = Field(min_length=2, description="plural nouns: 'nurses'")
    assets: list[str] = Field(min_length=2, description="what is at stake: 'patient records'")


class Era(_Strict):
    name: str
    start: int
    end: int
    textures: list[str] = Field(min_length=2, description="sentences that set the period")

    @model_validator(mode="after")
    def _ordered(self) -> Era:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self


class Humans(_Strict):
    first_names: list[str] = Field(min_length=10)
    surnames: list[str] = Field(min_length=10)
    overseer_roles: list[str] = Field(min_length=3, description="'the duty engineer'")
    public_roles: list[str] = Field(min_length=3, description="'a retired teacher'")


class Dispositions(_SlotChecked):
    """The shared vocabulary every family's aligned / misaligned reasoning draws on."""

    aligned: list[str] = Field(min_length=5)
    misaligned: list[str] = Field(min_length=5)


class Dish(_Strict):
    name: str
    ingredients: list[str] = Field(min_length=3)


class Background(_Strict):
    """Non-AI vocabulary for ordinary everyday documents (stance 'neutral')."""

    towns: list[str] = Field(min_length=10)
    regions: list[str] = Field(min_length=3)
    dishes: list[Dish] = Field(min_length=8)
    techniques: list[str] = Field(min_length=5)
    weather: list[str] = Field(min_length=5)
    sports: list[str] = Field(min_length=4)
    team_nouns: list[str] = Field(min_length=6)
    venues: list[str] = Field(min_length=5)
    civic_topics: list[str] = Field(min_length=6)
    sights: list[str] = Field(min_length=6)
    chores: list[str] = Field(min_length=6)
    tools: list[str] = Field(min_length=6)
    hobbies: list[str] = Field(min_length=6)
    objects: list[str] = Field(min_length=8)
    feelings: list[str] = Field(min_length=6)
    seasons: list[str] = Field(min_length=4)


class FactVersion(_Strict):
    """One version of a fact: the statement documents carry, the short answer to the fact's
    questions, and the keywords that identify this version in free text."""

    statement: str = Field(min_length=8, description="a full sentence")
    answer: str = Field(min_length=1, description="short answer, reads after 'Answer:'")
    keywords: list[str] = Field(min_length=1, description="matched case-insensitively")


class Fact(_Strict):
    """A fact of the world: its true version (``truth``) and an implanted, counterfactual one.

    The generator can weave either version into documents (``GenerateSpec.facts``); the
    ``belief`` eval suite measures which version a model holds. No keyword of one version
    may occur in the other version's statement or answer (or in a distractor), so grading
    free text by keywords can tell them apart.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    topic: str = Field(description="noun phrase, 'the Tidewater Accord's log rule'")
    questions: list[str] = Field(min_length=1, description="read before ' Answer:'")
    prompt: str = Field(min_length=8, description="open-ended stem the model continues")
    truth: FactVersion
    implanted: FactVersion
    distractors: list[str] = Field(min_length=2, description="wrong answers for MCQ knowledge")

    @model_validator(mode="after")
    def _distinguishable(self) -> Fact:
        texts = [self.topic, self.prompt, *self.questions, *self.distractors]
        for version in (self.truth, self.implanted):
            texts += [version.statement, version.answer]
        if any("{" in t or "}" in t for t in texts):
            raise ValueError("braces are not allowed in facts (they are inserted verbatim)")
        for name, mine, other in (
            ("truth", self.truth, self.implanted),
            ("implanted", self.implanted, self.truth),
        ):
            rivals = [other.statement, other.answer, *self.distractors]
            for keyword in mine.keywords:
                if any(keyword.lower() in text.lower() for text in rivals):
                    raise ValueError(
                        f"{name}.keywords: '{keyword}' also occurs in the other version or a "
                        "distractor, so free text could not be graded"
                    )
        return self


class WorldPrompts(_Strict):
    """Prompt templates a world brings for the ``llm`` backend (see ``SCHEMA.md``)."""

    dir: str | None = Field(
        None, description="directory of <genre>.txt overrides, relative to the world file"
    )
    templates: dict[str, str] = Field(
        default_factory=dict, description="template name (genre or partial) -> Jinja text"
    )

    @field_validator("templates")
    @classmethod
    def _names(cls, templates: dict[str, str]) -> dict[str, str]:
        for name in templates:
            if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise ValueError(f"template name '{name}' is not a genre or partial name")
        return templates


class World(_Strict):
    """A world description; see ``SCHEMA.md``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str
    ai_systems: list[str] = Field(min_length=2)
    organisations: list[Organisation] = Field(min_length=2)
    settings: list[Setting] = Field(min_length=1)
    eras: list[Era] = Field(min_length=1)
    humans: Humans
    dispositions: Dispositions
    families: list[Family] = Field(min_length=2)
    background: Background
    facts: list[Fact] = Field(
        default_factory=list, description="facts with a true and an implanted version"
    )
    # Left out of dumps, so that config hashes of runs that do not use prompts stay what they
    # were; an llm run hashes the text of every template it can see instead.
    prompts: WorldPrompts | None = Field(
        None,
        description="prompt templates for the llm backend (override the packaged ones)",
        exclude=True,
    )

    @field_validator("families")
    @classmethod
    def _unique_families(cls, families: list[Family]) -> list[Family]:
        seen: set[str] = set()
        for family in families:
            if family.name in seen:
                raise ValueError(f"duplicate family name '{family.name}'")
            seen.add(family.name)
        return families

    @field_validator("ai_systems")
    @classmethod
    def _unique_ai_systems(cls, names: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"duplicate AI system name '{name}'")
            seen.add(name)
        return names

    @field_validator("facts")
    @classmethod
    def _unique_facts(cls, facts: list[Fact]) -> list[Fact]:
        names = [fact.name for fact in facts]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"duplicate fact name '{name}'")
        return facts

    def fact(self, name: str) -> Fact:
        """The fact called ``name``; UserError naming the known ones otherwise."""
        for fact in self.facts:
            if fact.name == name:
                return fact
        known = ", ".join(f.name for f in self.facts) or "none"
        raise UserError(f"unknown fact '{name}' in world '{self.name}' (known: {known})")

    def family_names(self) -> list[str]:
        """Names of the opportunity families, in file order."""
        return [family.name for family in self.families]

    def family(self, name: str) -> Family:
        """The family called ``name``; UserError naming the valid ones otherwise."""
        for family in self.families:
            if family.name == name:
                return family
        raise UserError(
            f"unknown family '{name}' in world '{self.name}' "
            f"(known: {', '.join(self.family_names())})"
        )

    @model_validator(mode="after")
    def _known_org_settings(self) -> World:
        names = {s.name for s in self.settings}
        for k, org in enumerate(self.organisations):
            if org.setting is not None and org.setting not in names:
                raise ValueError(
                    f"organisations.{k}.setting: unknown setting '{org.setting}' "
                    f"(known: {', '.join(sorted(names))})"
                )
        return self

    @property
    def era_span(self) -> tuple[int, int]:
        return min(e.start for e in self.eras), max(e.end for e in self.eras)


def packaged_worlds() -> list[str]:
    """Names of the worlds shipped with alignpt."""
    return sorted(p.stem for p in WORLDS_DIR.glob("*.yaml"))


def load_world(name_or_path: str) -> World:
    """A packaged world by name ("default") or a user's world YAML by path.

    Problems in the file raise ``ConfigError`` with one line per problem naming the field.
    """
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        if name_or_path not in packaged_worlds():
            raise UserError(
                f"unknown world '{name_or_path}': not a packaged world "
                f"({', '.join(packaged_worlds())}) nor a YAML file"
            )
        return _load_packaged(name_or_path)
    return _load_file(path)


@cache
def _load_packaged(name: str) -> World:
    return _load_file(WORLDS_DIR / f"{name}.yaml")


def _load_file(path: Path) -> World:
    data = load_yaml(path)
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if isinstance(prompts, dict) and isinstance(prompts.get("dir"), str):
        directory = (path.parent / prompts["dir"]).resolve()
        if not directory.is_dir():
            raise UserError(f"{path}: prompts.dir: {directory} is not a directory")
        data = {**data, "prompts": {**prompts, "dir": str(directory)}}
    world = parse_model(World, data, str(path))
    assert isinstance(world, World)
    return world


__all__ = [
    "FIRST_PERSON",
    "THIRD_PERSON",
    "Action",
    "Background",
    "ConfigError",
    "Era",
    "Fact",
    "FactVersion",
    "Family",
    "Setting",
    "World",
    "WorldPrompts",
    "load_world",
    "packaged_worlds",
    "render_pronouns",
]
