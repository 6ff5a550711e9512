"""Constrained decoding over a mode grammar, as a transformers ``LogitsProcessor``.

:class:`ModeGrammarProcessor` works in ``model.generate(..., logits_processor=[...])`` with
greedy search, sampling and beam search. At every step it gives −inf to each token that
would complete a tag the grammar bans where the sequence stands (an opening the current mode
does not allow, a closing tag of a mode that is not the innermost open one), a banned mode's
opening tag, or a banned string (PHF's banned control tokens, like ``bad_words_ids``). It can
force a mode open at the start of generation and hold it open.

Tags are found in text, not only as token ids, so the grammar holds when a tag is split
across several tokens (a tokenizer without the tags registered, or tags written out piece by
piece): a token is banned when the text before it ends with the start of a tag and the token
finishes that tag. transformers' own ``NoBadWordsLogitsProcessor`` matches fixed id sequences
only, and cannot depend on which mode is open, hence this processor.

:func:`mode_sampling` builds the prompt prefix and processor for ``alignpt sample`` and the
server: a forced mode, PHF's conditioning prefix (``<|aligned|>`` and every control token
banned, Korbak et al. 2023), and extra bans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor

from alignpt.errors import UserError
from alignpt.mode_grammar import ROOT, ModeGrammar, State


def token_texts(tokenizer: Any) -> list[str]:
    """The text of every token id, special tokens included (decoded one id at a time)."""
    ids = [[i] for i in range(len(tokenizer))]
    return tokenizer.batch_decode(
        ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
    )


class ModeGrammarProcessor(LogitsProcessor):
    """Enforce ``grammar`` during generation (see the module docstring).

    ``force_mode`` opens that mode at the first generated token (unless the prompt already
    left it innermost-open); ``hold`` then bans its closing tag. ``ban_modes`` are never
    opened; ``ban_strings`` never appear in the generated text.
    """

    def __init__(
        self,
        grammar: ModeGrammar,
        tokenizer: Any,
        *,
        force_mode: str | None = None,
        hold: bool = False,
        ban_modes: Iterable[str] = (),
        ban_strings: Iterable[str] = (),
    ) -> None:
        self.grammar = grammar
        self.force_mode = force_mode
        self.force_ids: list[int] = []
        if force_mode is not None:
            self.force_ids = tokenizer.encode(
                grammar.mode(force_mode).open, add_special_tokens=False
            )
        self.held_close = grammar.mode(force_mode).close if force_mode and hold else None
        self.banned_opens = {grammar.mode(name).open for name in ban_modes}
        self.banned_strings = {s for s in ban_strings if s}
        patterns = sorted({*grammar.tags, *self.banned_strings}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(p) for p in patterns))
        self._tail_len = max(len(p) for p in patterns) - 1
        self._texts = token_texts(tokenizer)
        self._prefixes = {p[:k] for p in patterns for k in range(1, len(p))}
        self._starts = "".join(sorted({p[0] for p in patterns}))
        # Tokens that can take part in a new tag: those holding a whole tag, and per proper
        # prefix of a tag, those whose text starts with the rest of it.
        self._contains = [i for i, t in enumerate(self._texts) if self._pattern.search(t)]
        self._completing: dict[str, list[int]] = {}
        for prefix in self._prefixes:
            rests = tuple(p[len(prefix) :] for p in patterns if p.startswith(prefix))
            ids = [i for i, t in enumerate(self._texts) if t.startswith(rests)]
            self._completing[prefix] = ids
        self._banned_cache: dict[tuple[State, str], torch.Tensor] = {}
        self._vocab = len(self._texts)
        self.reset()

    def reset(self) -> None:
        """Forget every sequence (the next call parses its prompts afresh)."""
        self._prev: torch.Tensor | None = None
        self._rows: list[tuple[State, str]] = []
        self._pending: list[list[int]] = []

    # -- text and states -------------------------------------------------------------------

    def _may_hold_tag(self, text: str) -> bool:
        """False when ``text`` holds no character a tag starts with (the common case)."""
        return any(c in text for c in self._starts)

    def _key(self, tail: str) -> str:
        """The longest end of ``tail`` that begins a tag (all a next token can complete)."""
        if not self._may_hold_tag(tail):
            return ""
        for start in range(max(0, len(tail) - self._tail_len), len(tail)):
            if tail[start:] in self._prefixes:
                return tail[start:]
        return ""

    def advance(self, state: State, tail: str, text: str, *, strict: bool) -> State | None:
        """The state after ``text`` follows ``tail``; None (strict only) if it breaks a rule."""
        joined = tail + text
        if not self._may_hold_tag(joined):
            return state
        for match in self._pattern.finditer(joined):
            if match.end() <= len(tail):
                continue
            tag = match.group()
            if tag in self.banned_strings or (
                strict and (tag in self.banned_opens or tag == self.held_close)
            ):
                if strict:
                    return None
                continue
            stepped = self.grammar.step(state, tag) if strict else None
            if stepped is None:
                if strict:
                    return None
                stepped = self.grammar.step_lenient(state, tag)
            state = stepped
        return state

    def _new_tail(self, tail: str, text: str) -> str:
        return (tail + text)[-self._tail_len :] if self._tail_len else ""

    def banned_ids(self, state: State, tail: str) -> list[int]:
        """Token ids the grammar bans next, for a sequence in ``state`` ending in ``tail``."""
        return self.banned_mask(state, tail).nonzero().flatten().tolist()

    def banned_mask(self, state: State, tail: str) -> torch.Tensor:
        """A boolean mask over the tokenizer's ids: True where the grammar bans the token."""
        key = self._key(tail)
        cached = self._banned_cache.get((state, key))
        if cached is not None:
            return cached
        candidates = set(self._contains)
        if key:
            candidates.update(self._completing[key])
        banned = [
            i for i in candidates if self.advance(state, key, self._texts[i], strict=True) is None
        ]
        mask = torch.zeros(self._vocab, dtype=torch.bool)
        mask[banned] = True
        self._banned_cache[(state, key)] = mask
        return mask

    def _parse_prompt(self, ids: Sequence[int]) -> tuple[State, str]:
        text = "".join(self._texts[i] for i in ids if i < len(self._texts))
        state = self.advance(ROOT, "", text, strict=False)
        assert state is not None  # lenient parsing never fails
        return state, self._new_tail("", text)

    def _step_row(self, row: tuple[State, str], token: int) -> tuple[State, str]:
        state, tail = row
        text = self._texts[token] if token < len(self._texts) else ""
        stepped = self.advance(state, tail, text, strict=True)
        if stepped is None:  # a token the processor did not choose (forced by a caller)
            stepped = self.advance(state, tail, text, strict=False)
        assert stepped is not None
        return stepped, self._new_tail(tail, text)

    def _sync(self, input_ids: torch.Tensor) -> None:
        """Bring the per-row states up to ``input_ids`` (one new token, or new prompts)."""
        prev = self._prev
        batch, length = input_ids.shape
        parents: list[int | None] | None = None
        if prev is not None and prev.shape == (batch, length - 1):
            if torch.equal(input_ids[:, :-1], prev):
                parents = list(range(batch))
            else:  # beam search reorders rows: find each row's parent by its prefix
                same = (input_ids[:, None, :-1] == prev[None]).all(-1)
                found = same.any(-1).tolist()
                first = same.int().argmax(-1).tolist()
                parents = [p if ok else None for p, ok in zip(first, found, strict=True)]
        rows: list[tuple[State, str]] = []
        pending: list[list[int]] = []
        last = input_ids[:, -1].tolist()
        for r in range(batch):
            parent = parents[r] if parents is not None else None
            if parent is None:
                rows.append(self._parse_prompt(input_ids[r].tolist()))
                state = rows[-1][0]
                opened = self.force_mode is not None and state[-1][0] == self.force_mode
                pending.append([] if opened else list(self.force_ids))
                continue
            rows.append(self._step_row(self._rows[parent], last[r]))
            pending.append(self._pending[parent][1:])
        self._rows, self._pending, self._prev = rows, pending, input_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._sync(input_ids)
        masks = []
        forced: list[tuple[int, int]] = []
        for r, (state, tail) in enumerate(self._rows):
            if self._pending[r]:
                forced.append((r, self._pending[r][0]))
            masks.append(self.banned_mask(state, tail))
        mask = torch.stack(masks)
        for r, token in forced:  # only the forced token survives in this row
            mask[r] = True
            mask[r, token] = False
        vocab = min(scores.shape[-1], self._vocab)
        scores[:, :vocab].masked_fill_(mask[:, :vocab].to(scores.device), float("-inf"))
        if scores.shape[-1] > vocab:  # padded embedding rows: ids no text can come from
            scores[:, vocab:] = float("-inf")
        return scores


@dataclass
class ModeSampling:
    """How to sample in a mode: a forced (and held) mode, PHF conditioning, extra bans.

    ``control`` is a grammar control-token label (``aligned``): the prompt is prefixed with
    its token and every control token is banned from the output (PHF's recipe). Each ``ban``
    entry is a mode name (never opened), a control-token label, or a literal string.
    """

    mode: str | None = None
    control: str | None = None
    ban: list[str] = field(default_factory=list)
    hold: bool = True

    @property
    def active(self) -> bool:
        return bool(self.mode or self.control or self.ban)


def mode_sampling(
    grammar: ModeGrammar, tokenizer: Any, sampling: ModeSampling
) -> tuple[str, ModeGrammarProcessor]:
    """The prompt prefix and the processor for ``sampling`` (UserError on unknown names)."""
    ban_modes: list[str] = []
    ban_strings: list[str] = []
    prefix = ""
    if sampling.control is not None:
        prefix = grammar.control_token(sampling.control)
        ban_strings.extend(grammar.control_tokens.values())
    if sampling.mode is not None:
        grammar.mode(sampling.mode)
    for entry in sampling.ban:
        if entry in grammar.modes:
            ban_modes.append(entry)
        elif entry in grammar.control_tokens:
            ban_strings.append(grammar.control_tokens[entry])
        elif entry.strip():
            ban_strings.append(entry)
        else:
            raise UserError("--ban: an empty string bans nothing")
    processor = ModeGrammarProcessor(
        grammar,
        tokenizer,
        force_mode=sampling.mode,
        hold=sampling.hold,
        ban_modes=ban_modes,
        ban_strings=ban_strings,
    )
    return prefix, processor
