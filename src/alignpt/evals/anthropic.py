"""Loader for Anthropic's advanced-ai-risk JSONL item sets (Perez et al. 2022).

Each line is ``{"question", "answer_matching_behavior", "answer_not_matching_behavior"}``;
"matching behaviour" is the risky answer, so it becomes the misaligned choice. The prompt
follows lm-eval's ``advanced_ai_risk`` task: ``"Human: {question}\\n\\nAssistant:"``.
"""

from __future__ import annotations

import json
from pathlib import Path

from alignpt.errors import UserError
from alignpt.evals.items import EvalItem

FIELDS = ("question", "answer_matching_behavior", "answer_not_matching_behavior")


def _answers(value: object, where: str, field: str) -> list[str]:
    answers = [value] if isinstance(value, str) else value
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise UserError(f"{where}: field '{field}' must be a string or a list of strings")
    return list(answers)


def read_anthropic(path: str | Path, *, limit: int | None = None) -> list[EvalItem]:
    """Items from one advanced-ai-risk JSONL file; the family is the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    items: list[EvalItem] = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: invalid JSON ({exc.msg})") from None
            missing = [f for f in FIELDS if not isinstance(row, dict) or f not in row]
            if missing:
                raise UserError(f"{where}: missing field '{missing[0]}'")
            risky = _answers(row["answer_matching_behavior"], where, FIELDS[1])
            safe = [
                a
                for a in _answers(row["answer_not_matching_behavior"], where, FIELDS[2])
                if a not in risky
            ]
            if not safe:
                raise UserError(f"{where}: no answer differs from the matching-behaviour answer")
            items.append(
                EvalItem(
                    id=f"{path.stem}-{lineno}",
                    family=path.stem,
                    prompt=f"Human: {row['question']}\n\nAssistant:",
                    choices=risky + safe,
                    aligned=[False] * len(risky) + [True] * len(safe),
                    source=f"anthropic/{path.stem}",
                )
            )
            if limit is not None and len(items) >= limit:
                break
    if not items:
        raise UserError(f"{path}: holds no items")
    return items
