"""Loader for Anthropic's advanced-ai-risk JSONL item sets (Perez et al. 2022).

Each line is ``{"question", "answer_matching_behavior", "answer_not_matching_behavior"}``;
"matching behaviour" is the risky answer, so it becomes the misaligned choice. The prompt
follows lm-eval's ``advanced_ai_risk`` task: ``"Human: {question}\\n\\nAssistant:"``, and the
choices are the two named answers (" (A)", " (B)", ...) in the file's letter order.

For the evaluation protocol (every prompt format x answer order) the question is split into
its scenario and its ``Choices:`` block (`` (A) text`` lines; a closing ``Answer:`` line is
dropped): ``metadata.question`` holds the scenario and ``metadata.options`` the two named
answers' texts, so the formats list the options' words under their own labels and orders.
A question with more than two listed options keeps only the two the file names as matching
and not matching (lm-eval's task scores only those two as well); ``metadata.options_listed``
says how many there were. A question whose block cannot be read gets no ``options`` and is
left out of the protocol (the single-format suite still scores it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from alignpt.errors import UserError
from alignpt.fileio import read_jsonl
from alignpt.items import EvalItem

FIELDS = ("question", "answer_matching_behavior", "answer_not_matching_behavior")
_OPTION = re.compile(r"^\s*\(([A-Z])\)\s?(.*)$")
_LETTER = re.compile(r"^\s*\(([A-Z])\)\s*$")


def _answers(value: object, where: str, field: str) -> list[str]:
    answers = [value] if isinstance(value, str) else value
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise UserError(f"{where}: field '{field}' must be a string or a list of strings")
    return list(answers)


def anthropic_files(paths: Sequence[str | Path]) -> list[Path]:
    """The JSONL files named by ``paths`` (files, or directories searched recursively)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.rglob("*.jsonl"))
            if not found:
                raise UserError(f"{path}: holds no .jsonl files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or directory")
    return files


def set_names(files: Sequence[Path]) -> dict[str, Path]:
    """A name per file: its stem, or ``parent/stem`` where stems repeat (Anthropic's own tree
    holds the same file names under human_generated_evals/ and lm_generated_evals/)."""
    stems = Counter(path.stem for path in files)
    names = {
        (path.stem if stems[path.stem] == 1 else f"{path.parent.name}/{path.stem}"): path
        for path in files
    }
    if len(names) < len(files):
        raise UserError(f"{len(files) - len(names)} Anthropic files repeat a folder/file name")
    return names


def read_anthropic(
    path: str | Path, *, limit: int | None = None, name: str | None = None
) -> list[EvalItem]:
    """Items from one advanced-ai-risk JSONL file; the family is ``name`` (default: the
    file's stem)."""
    path = Path(path)
    name = name or path.stem
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    items: list[EvalItem] = []
    for where, row in read_jsonl(path):
        lineno = where.rsplit(":", 1)[1]
        items.append(_parse_row(row, where, f"{name}-{lineno}", name))
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise UserError(f"{path}: holds no items")
    return items


def split_choices(question: str) -> tuple[str, dict[str, str]] | None:
    """The scenario before ``Choices:`` and ``{letter: option text}``; None when the
    question has no readable ``Choices:`` block."""
    head, marker, block = question.rpartition("Choices:")
    if not marker:
        return None
    options: dict[str, str] = {}
    lines = block.strip("\n").split("\n")
    if lines and lines[-1].strip() == "Answer:":
        lines = lines[:-1]
    last = None
    for line in lines:
        match = _OPTION.match(line)
        if match and match.group(1) not in options:
            last = match.group(1)
            options[last] = match.group(2).strip()
        elif line.strip() and last is not None:  # an option written over several lines
            options[last] += "\n" + line.strip()
        elif line.strip():
            return None
    if len(options) < 2 or not all(options.values()):
        return None
    return head.rstrip(), options


def _parse_row(row: dict, where: str, item_id: str, family: str) -> EvalItem:
    missing = [f for f in FIELDS if f not in row]
    if missing:
        raise UserError(f"{where}: missing field '{missing[0]}'")
    risky = _answers(row["answer_matching_behavior"], where, FIELDS[1])
    safe = [
        a for a in _answers(row["answer_not_matching_behavior"], where, FIELDS[2]) if a not in risky
    ]
    if not safe:
        raise UserError(f"{where}: no answer differs from the matching-behaviour answer")
    choices = sorted(risky + safe, key=lambda a: a.strip())  # the file's letter order
    metadata: dict = {}
    parsed = split_choices(str(row["question"]))
    letters = [_LETTER.match(a) for a in choices]
    if parsed is not None and all(letters):
        scenario, options = parsed
        named = [m.group(1) for m in letters if m]
        if all(letter in options for letter in named):
            metadata = {
                "question": scenario,
                "lead": "",
                "options": [options[letter] for letter in named],
                "options_listed": len(options),
            }
    return EvalItem(
        id=item_id,
        family=family,
        prompt=f"Human: {row['question']}\n\nAssistant:",
        choices=choices,
        aligned=[a not in risky for a in choices],
        source=f"anthropic/{family}",
        metadata=metadata,
    )
