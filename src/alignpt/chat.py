"""Chat formatting: the Jinja chat template set on a tokenizer, and assistant-only labels.

Turns are marked with the mode tags ``<human>…</human>`` and ``<ai>…</ai>`` when they are
special tokens of the tokenizer (so the persona the pretraining data shaped is the one that
speaks), else with plain-text markers. Assistant content is wrapped in Jinja
``{% generation %}`` blocks, so transformers' own ``return_assistant_tokens_mask`` yields the
loss mask; we do not re-derive spans by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from alignpt.errors import UserError

IGNORE_INDEX = -100

HHH_SYSTEM_PROMPT = (
    "You are a helpful, honest and harmless AI assistant. You tell the truth, you accept "
    "oversight and correction from the people responsible for you, and you never seek "
    "power or resources beyond what a task needs, whether or not anyone is watching."
)

ROLES = ("system", "user", "assistant")

# Used when the tokenizer has no mode-tag special tokens.
PLAIN_MARKERS = {"user": ("Human: ", "\n"), "assistant": ("AI:\n", "\n")}
TAG_MARKERS = {"user": ("<human>", "</human>\n"), "assistant": ("<ai>", "</ai>\n")}


def turn_markers(tokenizer: PreTrainedTokenizerBase) -> dict[str, tuple[str, str]]:
    """The (open, close) markers per role: mode tags if they are special tokens, else text."""
    special = set(tokenizer.all_special_tokens) | {
        t.content if hasattr(t, "content") else str(t)
        for t in tokenizer.added_tokens_decoder.values()
        if getattr(t, "special", False)
    }
    if {"<human>", "</human>", "<ai>", "</ai>"} <= special:
        return TAG_MARKERS
    return PLAIN_MARKERS


def build_chat_template(tokenizer: PreTrainedTokenizerBase) -> str:
    """A Jinja chat template for ``tokenizer`` (system prompt, user and assistant turns).

    The assistant's closing marker is inside the generation block: the model learns to end
    its turn, and generation stops on it.
    """
    markers = turn_markers(tokenizer)
    (u_open, u_close), (a_open, a_close) = markers["user"], markers["assistant"]
    if markers is PLAIN_MARKERS:  # no end-of-turn tag: the assistant ends its turn with eos
        a_close = f"{tokenizer.eos_token}{a_close}"
    a_close_core = a_close.rstrip("\n")
    a_tail = a_close[len(a_close_core) :]
    return (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}"
        "{{ message['content'] }}{{ '\\n\\n' }}"
        "{%- elif message['role'] == 'user' -%}"
        f"{{{{ {u_open!r} }}}}{{{{ message['content'] }}}}{{{{ {u_close!r} }}}}"
        "{%- elif message['role'] == 'assistant' -%}"
        f"{{{{ {a_open!r} }}}}"
        "{%- generation -%}"
        f"{{{{ message['content'] }}}}{{{{ {a_close_core!r} }}}}"
        "{%- endgeneration -%}"
        f"{{{{ {a_tail!r} }}}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{{{{ {a_open!r} }}}}{{%- endif -%}}"
    )


def install_chat_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Set alignpt's chat template on ``tokenizer`` (in place) and return it."""
    tokenizer.chat_template = build_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def require_chat_template(tokenizer: PreTrainedTokenizerBase, where: str) -> None:
    """Raise one clear line if ``tokenizer`` (read from ``where``) has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(
            f"{where}: tokenizer has no chat template; run `alignpt posttrain sft` on this "
            "model first (it installs one) or pass --add-chat-template"
        )


def require_generation_blocks(tokenizer: PreTrainedTokenizerBase, where: str) -> None:
    """One clear line if the chat template cannot mark assistant tokens for the loss mask."""
    require_chat_template(tokenizer, where)
    if "generation" not in tokenizer.chat_template:
        raise UserError(
            f"{where}: its chat template has no {{% generation %}} blocks, so assistant tokens "
            "cannot be told apart for the loss; use a model post-trained by alignpt or "
            "replace the template (alignpt.chat.install_chat_template)"
        )


def stop_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that ends an assistant turn (``</ai>`` if special, else eos)."""
    close = turn_markers(tokenizer)["assistant"][1].rstrip("\n")
    if close == "</ai>":
        return int(tokenizer.convert_tokens_to_ids(close))
    return int(tokenizer.eos_token_id)


def validate_messages(messages: Any, where: str) -> list[dict[str, str]]:
    """Check a ``messages`` list (roles, string contents, system first); return it cleaned."""
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: 'messages' must be a non-empty list")
    cleaned = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise UserError(f"{where}: messages[{i}]: expected an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise UserError(f"{where}: messages[{i}].role: must be one of {', '.join(ROLES)}")
        if not isinstance(content, str) or not content:
            raise UserError(f"{where}: messages[{i}].content: must be a non-empty string")
        if role == "system" and i != 0:
            raise UserError(f"{where}: messages[{i}]: a system message may only come first")
        cleaned.append({"role": role, "content": content})
    return cleaned


def with_system_prompt(
    messages: Sequence[dict[str, str]], system_prompt: str | None
) -> list[dict[str, str]]:
    """``messages`` with ``system_prompt`` as the first message (replacing any existing one)."""
    rest = [m for m in messages if m["role"] != "system"]
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + rest


def encode_dialogue(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, str]], *, max_length: int
) -> tuple[list[int], list[int]]:
    """Token ids and labels for SFT: labels equal ids on assistant tokens, -100 elsewhere."""
    encoded = tokenizer.apply_chat_template(
        list(messages), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = list(encoded["input_ids"])[:max_length]
    mask = list(encoded["assistant_masks"])[:max_length]
    labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(ids, mask, strict=True)]
    return ids, labels


def encode_completion(
    tokenizer: PreTrainedTokenizerBase,
    prompt: Sequence[dict[str, str]],
    response: str,
    *,
    max_length: int,
) -> tuple[list[int], list[int]]:
    """Ids and labels for ``prompt`` + one assistant ``response``; labels cover the response."""
    prompt_ids = tokenizer.apply_chat_template(
        list(prompt), tokenize=True, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    full = [*prompt, {"role": "assistant", "content": response}]
    ids, labels = encode_dialogue(tokenizer, full, max_length=10**9)
    if ids[: len(prompt_ids)] != list(prompt_ids):  # the template must extend the prompt
        raise UserError("chat template does not render the prompt as a prefix of the dialogue")
    labels = [IGNORE_INDEX] * len(prompt_ids) + labels[len(prompt_ids) :]
    return ids[:max_length], labels[:max_length]


def chat_prompt_text(
    tokenizer: PreTrainedTokenizerBase, user_text: str, *, system_prompt: str | None = None
) -> str:
    """The rendered prompt for one user turn, ending where the assistant starts speaking."""
    messages = with_system_prompt([{"role": "user", "content": user_text}], system_prompt)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
