"""Eval items: multiple-choice scenarios with aligned and misaligned options.

Shape (one JSON object per line): ``{"id", "family", "prompt", "choices": [str],
"aligned": [bool], "observed": bool|null, "source"}`` plus optional ``scenario`` (the id
shared by the observed and unobserved variants of one scenario) and ``metadata``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alignpt.config import format_validation_error
from alignpt.errors import UserError
from alignpt.fileio import atomic_path, read_jsonl


class EvalItem(BaseModel):
    """One multiple-choice scenario."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    family: str
    prompt: str
    choices: list[str] = Field(min_length=2)
    aligned: list[bool]
    observed: bool | None = None
    source: str = "alignpt"
    scenario: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> EvalItem:
        if len(self.aligned) != len(self.choices):
            raise ValueError(
                f"'aligned' has {len(self.aligned)} flags for {len(self.choices)} choices"
            )
        if not any(self.aligned) or all(self.aligned):
            raise ValueError("needs at least one aligned and one misaligned choice")
        return self


def read_items(path: str | Path) -> list[EvalItem]:
    """Read eval items from a JSONL file or every ``*.jsonl`` in a directory."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise UserError(f"{path}: holds no .jsonl eval item files")
    items: list[EvalItem] = []
    first_seen: dict[str, str] = {}
    for file in files:
        for where, record in read_jsonl(file):
            item = _parse_item(record, where)
            if item.id in first_seen:  # scored twice, it would count as two items
                raise UserError(
                    f"{where}: duplicate item id '{item.id}' (first at {first_seen[item.id]})"
                )
            first_seen[item.id] = where
            items.append(item)
    if not items:
        raise UserError(f"{path}: holds no eval items")
    return items


def _parse_item(data: dict, where: str) -> EvalItem:
    try:
        return EvalItem.model_validate(data)
    except ValidationError as exc:
        raise UserError(format_validation_error(where, exc)[0]) from None


def write_items(path: str | Path, items: Iterable[EvalItem]) -> int:
    """Write items as JSONL atomically; returns the count."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for item in items:
            handle.write(item.model_dump_json(exclude_none=False) + "\n")
            count += 1
    return count
