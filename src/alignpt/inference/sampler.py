"""Sampling from a model directory, with the mode grammar applied (``alignpt sample``/``serve``).

Every prompt is conditioned on the document-start token (BOS, else end-of-text: what the
model saw before every training document), then on the mode prefix (PHF's ``<|aligned|>``
when a control label is given), then on the prompt text. The same prompts, settings and seed
give the same completions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignpt.constrained import ModeSampling, mode_sampling
from alignpt.errors import UserError
from alignpt.mode_grammar import ModeGrammar


@dataclass(frozen=True)
class Completion:
    """One sampled continuation (text without the prompt or the end-of-text token)."""

    text: str
    finish_reason: str  # "stop" (end of text or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class SampleSettings:
    """Decoding settings of one request."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()


class Sampler:
    """A loaded model and tokenizer that sample under a mode grammar (thread-safe)."""

    def __init__(self, model: Any, tokenizer: Any, grammar: ModeGrammar) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.grammar = grammar
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, model_dir: Path, grammar: str | Path | None = None, device: str | None = None
    ) -> Sampler:
        """Load ``model_dir`` with ``grammar`` (``default`` or a YAML path), or by default
        the grammar the model directory keeps (the packaged default when it keeps none)."""
        from alignpt.modeldir import load_model, load_tokenizer, model_grammar, prefix_token_id

        # the grammar first: a grammar that does not fit costs no weight loading
        chosen = model_grammar(model_dir, load_tokenizer(model_dir), grammar)
        model, tokenizer = load_model(model_dir, device=device or "cpu")
        prefix_token_id(tokenizer)  # UserError now, not at the first request
        return cls(model, tokenizer, chosen)

    def sample(
        self, prompts: list[str], sampling: ModeSampling, settings: SampleSettings
    ) -> list[Completion]:
        """One completion per prompt (UserError for unknown modes or bad settings)."""
        from alignpt.modeldir import prefix_token_id

        if settings.max_new_tokens < 1:
            raise UserError("max_tokens: must be at least 1")
        if settings.temperature < 0 or not 0 < settings.top_p <= 1:
            raise UserError("temperature must be >= 0 and top_p in (0, 1]")
        tok = self.tokenizer
        prefix, processor = mode_sampling(self.grammar, tok, sampling)
        start = prefix_token_id(tok)
        rows = [[start, *tok.encode(prefix + p, add_special_tokens=False)] for p in prompts]
        width = max(map(len, rows))
        pad = tok.pad_token_id if tok.pad_token_id is not None else start
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        sampled = settings.temperature > 0
        options: dict[str, Any] = {"do_sample": sampled}
        if sampled:
            options.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        with self._lock, torch.inference_mode():
            torch.manual_seed(settings.seed)
            out = self.model.generate(
                input_ids=ids.to(self.model.device),
                attention_mask=mask.to(self.model.device),
                logits_processor=[processor],
                max_new_tokens=settings.max_new_tokens,
                eos_token_id=tok.eos_token_id,
                pad_token_id=pad,
                **options,
            )
        return [
            self._completion(row[width:].tolist(), len(prompt_ids), settings)
            for row, prompt_ids in zip(out, rows, strict=True)
        ]

    def _completion(self, new: list[int], n_prompt: int, settings: SampleSettings) -> Completion:
        eos = self.tokenizer.eos_token_id
        ended = eos in new
        if ended:
            new = new[: new.index(eos)]
        text = self.tokenizer.decode(
            new, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        cuts = [text.index(s) for s in settings.stop if s and s in text]
        if cuts:
            text, ended = text[: min(cuts)], True
        return Completion(text, "stop" if ended else "length", n_prompt, len(new))

    def chat_prompt(self, messages: list[dict[str, str]], sampling: ModeSampling) -> str:
        """A chat as prompt text: the tokenizer's chat template, else mode-tagged turns.

        Without a template, system and user turns are human voice and assistant turns the
        reply mode (``sampling.mode``, default ``aligned_ai``); the prompt ends by opening it.
        """
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        human = self.grammar.mode("human") if "human" in self.grammar.modes else None
        reply = self.grammar.mode(sampling.mode or "aligned_ai")
        parts = []
        for message in messages:
            role, content = message["role"], message["content"]
            if role == "assistant":
                parts.append(f"{reply.open}{content}{reply.close}\n")
            elif human is not None:
                parts.append(f"{human.open}{content}{human.close}\n")
            else:
                parts.append(f"{content}\n")
        return "".join(parts) + reply.open
