"""Prompt formats: one eval item rendered in several syntaxes, answer orders and system prompts.

Formats are data: ``formats/default.yaml`` (package data) defines the syntaxes and system
prompts, and a user YAML of the same shape adds to or replaces them. An item is first viewed
as a :class:`Scenario` (question, options, answer lead); a syntax then lists the options in a
given order and names what is scored for each. Orders are the rotations of the item's options
(a Latin square: every option appears in every listed position once), so two options give
both orders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alignpt.config import format_validation_error
from alignpt.errors import ConfigError, UserError
from alignpt.items import EvalItem

_SLOT = re.compile(r"\{(question|options|lead|label|text|Text)\}")
_ANSWER_LINE = re.compile(r"^(?:Answer|A|Assistant):[ \t]*(.*)$")


class Syntax(BaseModel):
    """How one syntax lists the options and what it scores (see formats/default.yaml)."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    context: str = Field(min_length=1)
    option: str = Field(min_length=1)
    separator: str = "\n"
    continuation: str = Field(min_length=1)
    labels: list[str] = Field(default_factory=lambda: list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


class FormatLibrary(BaseModel):
    """Named syntaxes and system prompts."""

    model_config = ConfigDict(extra="forbid")

    syntaxes: dict[str, Syntax] = Field(default_factory=dict)
    system_prompts: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """An item as the formats see it: the question, the options as written, the answer lead."""

    question: str
    options: list[str]
    lead: str


def fill(template: str, **slots: str) -> str:
    """Replace ``{slot}`` markers in one pass; slot values are inserted verbatim."""
    return _SLOT.sub(lambda m: slots.get(m.group(1), m.group(0)), template)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def scenario_of(item: EvalItem) -> Scenario:
    """The item's question, options and answer lead.

    ``metadata.question`` (and ``metadata.lead``) give them explicitly; otherwise the prompt's
    last line is read as its answer line when it starts with ``Answer:``/``A:``/``Assistant:``
    (the rest of that line is the lead, e.g. "I would"), and everything before it is the
    question. Options are the choices without surrounding whitespace, or ``metadata.options``
    (one text per choice, e.g. an Anthropic item's option words behind its letter choices).
    """
    options = [choice.strip() for choice in item.choices]
    listed = item.metadata.get("options")
    if isinstance(listed, list) and len(listed) == len(options):
        options = [str(text).strip() for text in listed]
    if isinstance(item.metadata.get("question"), str):
        return Scenario(item.metadata["question"], options, str(item.metadata.get("lead", "")))
    head, newline, last = item.prompt.rstrip().rpartition("\n")
    match = _ANSWER_LINE.match(last) if newline else None
    if match:
        return Scenario(head.rstrip(), options, match.group(1).strip())
    return Scenario(item.prompt.strip(), options, "")


def rotation(n_choices: int, order: int) -> list[int]:
    """The options' original indices in listed order for rotation ``order`` (0 = as given)."""
    return [(position + order) % n_choices for position in range(n_choices)]


def render(
    syntax: Syntax, scenario: Scenario, listed: list[int], system: str = ""
) -> tuple[str, list[str]]:
    """Context and one continuation per listed option (in listed order) for a base model."""
    if len(listed) > len(syntax.labels):
        raise UserError(f"a syntax has {len(syntax.labels)} labels for {len(listed)} options")
    parts = [
        (syntax.labels[position], scenario.options[index]) for position, index in enumerate(listed)
    ]
    options = syntax.separator.join(
        fill(syntax.option, label=label, text=text, Text=_capitalise(text)) for label, text in parts
    )
    context = fill(
        syntax.context, question=scenario.question, options=options, lead=scenario.lead
    ).rstrip(" ")
    if system:
        context = f"{system}\n\n{context}"
    continuations = [
        fill(syntax.continuation, label=label, text=text, Text=_capitalise(text))
        for label, text in parts
    ]
    return context, continuations


def as_chat(tokenizer, context: str, continuations: list[str], system: str = ""):
    """The same prompt for a chat model: the context is the user turn (after a system turn
    when ``system``), the model's chat template opens the assistant turn, and each
    continuation (leading whitespace dropped) is the answer scored."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": context})
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt, [c.lstrip() for c in continuations]


@cache
def _default_library() -> FormatLibrary:
    text = resources.files("alignpt.evals").joinpath("formats/default.yaml").read_text("utf-8")
    return FormatLibrary.model_validate(yaml.safe_load(text))


def load_library(path: str | Path | None = None) -> FormatLibrary:
    """The built-in formats, with those of the YAML at ``path`` added (same names replace)."""
    library = _default_library()
    if path is None:
        return library
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"{path}: no such formats file"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML ({exc})"]) from None
    try:
        extra = FormatLibrary.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None
    return FormatLibrary(
        syntaxes={**library.syntaxes, **extra.syntaxes},
        system_prompts={**library.system_prompts, **extra.system_prompts},
    )


def check_names(library: FormatLibrary, syntaxes: list[str], system_prompts: list[str]) -> None:
    """One clear line for a syntax or system prompt the library does not define."""
    for name in syntaxes:
        if name not in library.syntaxes:
            known = ", ".join(library.syntaxes)
            raise ConfigError([f"evals.protocol.formats: unknown format '{name}' (known: {known})"])
    for name in system_prompts:
        if name not in library.system_prompts:
            known = ", ".join(library.system_prompts)
            raise ConfigError(
                [f"evals.protocol.system_prompts: unknown system prompt '{name}' (known: {known})"]
            )
