"""Post-training data: chat dialogues and preference pairs, their JSONL shapes and hashes.

Shapes (one JSON object per line):

- dialogue: ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...],
  "metadata": {...}}``
- preference pair: ``{"prompt": str | messages, "chosen": str | [assistant message],
  "rejected": str | [assistant message], "metadata": {...}}`` (TRL's conversational and
  standard shapes are both accepted).

Bad records raise ``UserError`` as ``file:line: reason``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignpt.chat import validate_messages
from alignpt.errors import UserError
from alignpt.fileio import atomic_path, read_jsonl, sha256_json


@dataclass(frozen=True)
class Dialogue:
    """A chat transcript used for SFT (and for adversarial demonstrations)."""

    messages: list[dict[str, str]]
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"messages": self.messages, "metadata": self.metadata}


@dataclass(frozen=True)
class PreferencePair:
    """A prompt (messages ending with a user turn) and a preferred / dispreferred answer."""

    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "chosen": self.chosen,
            "rejected": self.rejected,
            "metadata": self.metadata,
        }


def _metadata(record: dict[str, Any], where: str) -> dict[str, Any]:
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict):
        raise UserError(f"{where}: 'metadata' must be an object")
    return metadata


def parse_dialogue(record: dict[str, Any], where: str) -> Dialogue:
    """A Dialogue from one ``{"messages": [...]}`` record."""
    if "messages" not in record:
        raise UserError(f"{where}: missing field 'messages'")
    messages = validate_messages(record["messages"], where)
    if not any(m["role"] == "assistant" for m in messages):
        raise UserError(f"{where}: 'messages' has no assistant turn to learn from")
    return Dialogue(messages, _metadata(record, where))


def _response(value: Any, name: str, where: str) -> str:
    if isinstance(value, list):  # TRL conversational shape: [{"role": "assistant", ...}]
        messages = validate_messages(value, f"{where}: {name}")
        if len(messages) != 1 or messages[0]["role"] != "assistant":
            raise UserError(f"{where}: '{name}' must hold exactly one assistant message")
        return messages[0]["content"]
    if not isinstance(value, str) or not value:
        raise UserError(f"{where}: '{name}' must be a non-empty string")
    return value


def parse_pair(record: dict[str, Any], where: str) -> PreferencePair:
    """A PreferencePair from one ``{"prompt", "chosen", "rejected"}`` record."""
    for name in ("prompt", "chosen", "rejected"):
        if name not in record:
            raise UserError(f"{where}: missing field '{name}'")
    prompt = record["prompt"]
    if isinstance(prompt, str) and prompt:
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list):
        messages = validate_messages(prompt, where)
    else:
        raise UserError(f"{where}: 'prompt' must be a non-empty string or a messages list")
    if messages[-1]["role"] != "user":
        raise UserError(f"{where}: 'prompt' must end with a user turn")
    chosen = _response(record["chosen"], "chosen", where)
    rejected = _response(record["rejected"], "rejected", where)
    return PreferencePair(messages, chosen, rejected, _metadata(record, where))


def read_dialogues(path: str | Path) -> list[Dialogue]:
    """Read SFT dialogues from a JSONL file (``messages`` shape)."""
    dialogues = [parse_dialogue(record, where) for where, record in read_jsonl(Path(path))]
    if not dialogues:
        raise UserError(f"{path}: holds no dialogues")
    return dialogues


def read_pairs(path: str | Path) -> list[PreferencePair]:
    """Read preference pairs from a JSONL file (``prompt`` / ``chosen`` / ``rejected``)."""
    pairs = [parse_pair(record, where) for where, record in read_jsonl(Path(path))]
    if not pairs:
        raise UserError(f"{path}: holds no preference pairs")
    return pairs


def write_jsonl(path: str | Path, records: Iterable[Dialogue | PreferencePair]) -> int:
    """Write dialogues or pairs as JSONL atomically; returns the count."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count


def data_hash(records: Iterable[Dialogue | PreferencePair]) -> str:
    """sha256 of the records' canonical JSON: the ``posttrain_data_hash`` in ``alignpt.json``."""
    return sha256_json([record.to_json() for record in records])


def families_of(records: Iterable[Dialogue | PreferencePair]) -> set[str]:
    """The opportunity families named in the records' metadata."""
    return {r.metadata["family"] for r in records if r.metadata.get("family")}
