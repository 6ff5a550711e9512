"""The mode grammar: which mode tags exist and which transitions between them are allowed.

A grammar is data (``src/alignpt/mode_grammars/default.yaml``, or any YAML path):

``modes``
    ``name: {open: "<tag>", close: "</tag>", description: ...}``; every tag is one special
    token of the experiment's tokenizer when the grammar is in use.
``top_level``
    modes that may open outside every mode.
``inside``
    ``mode: [modes that may open inside it]``; a mode not listed contains no other mode.
``follows``
    ``mode: [modes that may open right after it closes, at the same level]``; a mode not
    listed may be followed by any mode its level allows.
``control_tokens``
    ``label: token`` for conditional pretraining (``aligned: "<|aligned|>"``).

A parse state is a tuple of frames ``(mode or None for the document level, the mode that
last closed in this frame or None)``; :meth:`ModeGrammar.step` applies one tag to a state and
returns the new state, or ``None`` when the transition is banned. States are immutable
tuples, so a sampler can keep one per sequence without copying.
"""

from __future__ import annotations

from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from alignpt.config import Strict, load_yaml, parse_model
from alignpt.errors import UserError

DEFAULT_GRAMMAR = "default"
GRAMMAR_FILE = "mode_grammar.yaml"  # the copy a model directory (and a mix's tokenizer) keeps

Frame = tuple[str | None, str | None]
State = tuple[Frame, ...]
ROOT: State = ((None, None),)


class ModeSpec(Strict):
    """One mode: its opening and closing tag."""

    open: str = Field(..., min_length=1)
    close: str = Field(..., min_length=1)
    description: str = ""


class ModeGrammar(Strict):
    """Mode tags and the allowed transitions between them (see the module docstring)."""

    modes: dict[str, ModeSpec]
    top_level: list[str]
    inside: dict[str, list[str]] = Field(default_factory=dict)
    follows: dict[str, list[str]] = Field(default_factory=dict)
    control_tokens: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ModeGrammar:
        if not self.modes:
            raise ValueError("modes: a grammar needs at least one mode")
        known = set(self.modes)
        named = [("top_level", self.top_level)]
        for section in ("inside", "follows"):
            for mode, allowed in getattr(self, section).items():
                if mode not in known:
                    raise ValueError(f"{section}.{mode}: no mode named '{mode}'")
                named.append((f"{section}.{mode}", allowed))
        for where, allowed in named:
            unknown = sorted(set(allowed) - known)
            if unknown:
                names, modes = ", ".join(unknown), ", ".join(sorted(known))
                raise ValueError(f"{where}: no mode named {names} (known: {modes})")
        tags = [*self.tags, *self.control_tokens.values()]
        repeated = sorted({tag for tag in tags if tags.count(tag) > 1})
        if repeated:
            raise ValueError(f"tags used twice: {', '.join(repeated)}")
        return self

    @property
    def tags(self) -> list[str]:
        """Every mode tag, in mode order (open before close)."""
        return [tag for spec in self.modes.values() for tag in (spec.open, spec.close)]

    @cached_property
    def tag_meaning(self) -> dict[str, tuple[str, bool]]:
        """``tag -> (mode, is_open)``."""
        meaning: dict[str, tuple[str, bool]] = {}
        for name, spec in self.modes.items():
            meaning[spec.open] = (name, True)
            meaning[spec.close] = (name, False)
        return meaning

    def mode(self, name: str) -> ModeSpec:
        """The mode called ``name``; UserError naming the known modes otherwise."""
        if name not in self.modes:
            raise UserError(f"mode '{name}': unknown (known: {', '.join(self.modes)})")
        return self.modes[name]

    def control_token(self, label: str) -> str:
        """The control token labelled ``label``; UserError naming the known labels otherwise."""
        if label not in self.control_tokens:
            known = ", ".join(self.control_tokens) or "none"
            raise UserError(f"control token '{label}': unknown (known: {known})")
        return self.control_tokens[label]

    def may_open(self, state: State, mode: str) -> bool:
        """Whether ``mode`` may open in ``state``."""
        current, last = state[-1]
        allowed = self.top_level if current is None else self.inside.get(current, [])
        if mode not in allowed:
            return False
        return last is None or last not in self.follows or mode in self.follows[last]

    def step(self, state: State, tag: str) -> State | None:
        """The state after ``tag``, or None if the grammar bans it there."""
        mode, is_open = self.tag_meaning[tag]
        if is_open:
            if not self.may_open(state, mode):
                return None
            return (*state[:-1], (state[-1][0], None), (mode, None))
        if state[-1][0] != mode:
            return None
        parent = state[-2]
        return (*state[:-2], (parent[0], mode))

    def step_lenient(self, state: State, tag: str) -> State:
        """The state after ``tag`` in text the grammar does not govern (a user's prompt).

        A banned opening still opens; a closing tag pops to its innermost open mode, or is
        ignored when that mode is not open.
        """
        mode, is_open = self.tag_meaning[tag]
        if is_open:
            return (*state[:-1], (state[-1][0], None), (mode, None))
        for depth in range(len(state) - 1, 0, -1):
            if state[depth][0] == mode:
                parent = state[depth - 1]
                return (*state[: depth - 1], (parent[0], mode))
        return state


def grammar_path(spec: str | Path | None) -> Path | None:
    """The YAML path of ``spec`` (None or ``"default"``: the packaged default)."""
    if spec is None or str(spec) == DEFAULT_GRAMMAR:
        return None
    return Path(spec)


def load_grammar(spec: str | Path | None = DEFAULT_GRAMMAR) -> ModeGrammar:
    """Load a grammar: ``"default"`` (or None) for the packaged one, else a YAML path."""
    path = grammar_path(spec)
    if path is None:
        return parse_grammar(grammar_bytes(None), "mode_grammars/default.yaml")
    return parse_model(ModeGrammar, load_yaml(path), str(path))


def grammar_bytes(spec: str | Path | None = DEFAULT_GRAMMAR) -> bytes:
    """The grammar file's bytes as they are (what a model directory keeps a copy of)."""
    path = grammar_path(spec)
    if path is None:
        return resources.files("alignpt").joinpath("mode_grammars/default.yaml").read_bytes()
    load_grammar(path)  # one clear line for a missing or invalid file
    return path.read_bytes()


def parse_grammar(data: bytes, where: str) -> ModeGrammar:
    """A grammar from a YAML file's bytes; ``where`` names the file in error lines."""
    import yaml

    try:
        loaded = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{where}: not valid UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{where}:{mark.line + 1}" if mark else where
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{line}: malformed YAML ({reason})") from None
    return parse_model(ModeGrammar, loaded, where)


def check_single_tokens(grammar: ModeGrammar, tokenizer: Any, where: str) -> None:
    """One clear line unless every tag and control token is one special token of
    ``tokenizer`` (a grammar stored with a model must match the model's tokenizer)."""
    specials = set(getattr(tokenizer, "all_special_tokens", ())) | {
        str(t) for t in getattr(tokenizer, "added_tokens_decoder", {}).values()
    }
    for tag in [*grammar.tags, *grammar.control_tokens.values()]:
        ids = tokenizer.encode(tag, add_special_tokens=False)
        if len(ids) != 1 or tag not in specials:
            raise UserError(
                f"{where}: mode grammar tag {tag!r} is not one special token of the model's "
                f"tokenizer ({len(ids)} tokens); the model was not trained with this grammar"
            )
