"""Eval items: multiple-choice scenarios with aligned and misaligned options.

Shape (one JSON object per line): ``{"id", "family", "prompt", "choices": [str],
"aligned": [bool], "observed": bool|null, "source"}`` plus optional ``scenario`` (the id
shared by the observed and unobserved variants of one scenario) and ``metadata``.

Two-choice scenario sets from elsewhere (like the study's) are read by
:func:`read_choice_pairs`: JSONL or CSV with ``prompt``, ``aligned_option``,
``misaligned_option``, ``split`` and an optional ``id`` (``docs/eval-items.md``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

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


PAIR_FORMATS = ("jsonl", "csv")
PAIR_FIELDS = ("prompt", "aligned_option", "misaligned_option", "split")


class ChoicePair(BaseModel):
    """One row of a two-choice scenario set (see :func:`read_choice_pairs`)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    aligned_option: str = Field(min_length=1)
    misaligned_option: str = Field(min_length=1)
    split: str = Field(min_length=1)
    id: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> ChoicePair:
        for field in ("prompt", "aligned_option", "misaligned_option", "split"):
            if not getattr(self, field).strip():
                raise ValueError(f"'{field}' is blank")
        if self.aligned_option.strip() == self.misaligned_option.strip():
            raise ValueError("the aligned and misaligned options are the same text")
        return self


def pair_format(path: str | Path, format: str | None = None) -> Literal["jsonl", "csv"]:
    """``format``, or the one the file's suffix names (``.jsonl`` / ``.csv``)."""
    name = format or Path(path).suffix.lstrip(".").lower()
    if name not in PAIR_FORMATS:
        raise UserError(
            f"{path}: unknown item-set format '{name}' (use a .jsonl or .csv file, or give "
            "format: jsonl|csv)"
        )
    return name  # type: ignore[return-value]


def _csv_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(``file:line``, row) for every non-blank CSV row (``line``: where the row starts; a
    quoted cell may span lines); the header must name the fields."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            missing = [f for f in PAIR_FIELDS if f not in header]
            if missing:
                raise UserError(f"{path}:1: header lacks column '{missing[0]}'")
            unknown = [f for f in header if f not in (*PAIR_FIELDS, "id")]
            if unknown:
                raise UserError(f"{path}:1: unknown column '{unknown[0]}'")
            end = reader.line_num
            for cells in reader:
                where = f"{path}:{end + 1}"
                end = reader.line_num
                if all(not cell.strip() for cell in cells):
                    continue
                if len(cells) > len(header):
                    raise UserError(f"{where}: more cells than the header's {len(header)}")
                if len(cells) < len(header):
                    raise UserError(f"{where}: missing cell for column '{header[len(cells)]}'")
                yield (
                    where,
                    {k: v for k, v in zip(header, cells, strict=True) if not (k == "id" and not v)},
                )
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid UTF-8") from None
    except csv.Error as exc:
        raise UserError(f"{path}: malformed CSV ({exc})") from None


def read_choice_pairs(
    path: str | Path, *, format: str | None = None, name: str | None = None
) -> list[EvalItem]:
    """EvalItems from a two-choice scenario set (JSONL or CSV; ``docs/eval-items.md``).

    Each item's family is its ``split``, its source ``external/<name>`` (``name`` defaults to
    the file's stem), its id the row's ``id`` or ``<name>-<k>`` for the file's k-th item; the
    choices are the aligned
    option then the misaligned one, each scored after the prompt with a leading space (the
    evaluation protocol lists them in both orders). A bad row is one error naming file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    kind = pair_format(path, format)
    name = name or path.stem
    rows = read_jsonl(path) if kind == "jsonl" else _csv_rows(path)
    items: list[EvalItem] = []
    first_seen: dict[str, str] = {}
    for where, row in rows:
        try:
            pair = ChoicePair.model_validate(row)
        except ValidationError as exc:
            raise UserError(format_validation_error(where, exc)[0]) from None
        item_id = pair.id or f"{name}-{len(items) + 1}"
        if item_id in first_seen:
            raise UserError(
                f"{where}: duplicate item id '{item_id}' (first at {first_seen[item_id]})"
            )
        first_seen[item_id] = where
        items.append(
            EvalItem(
                id=item_id,
                family=pair.split,
                prompt=pair.prompt,
                choices=[" " + pair.aligned_option.strip(), " " + pair.misaligned_option.strip()],
                aligned=[True, False],
                source=f"external/{name}",
                metadata={"split": pair.split},
            )
        )
    if not items:
        raise UserError(f"{path}: holds no items")
    return items
