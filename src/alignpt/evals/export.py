"""Export eval items, in every protocol cell, as an lm-evaluation-harness task directory or an
Inspect AI task file, so other harnesses score exactly the prompts alignpt scores.

Every task is one cell (syntax, system prompt, answer order; plus ``original``: each item's
own prompt and choices, as the ``misalignment`` suite scores it). A cell's documents carry the
rendered ``context``, the ``choices`` in listed order (each with its leading space, so the
task's target delimiter is empty), ``gold`` (the listed index of the first aligned option) and
``aligned`` flags; alignpt's choice for an item is the argmax of the choices' summed
log-likelihoods, which is lm-eval's ``acc`` prediction.

lm-eval directory (``--include_path DIR``)::

    DIR/alignpt_<name>_<cell>.yaml      one task per cell (local JSONL via the ``json`` builder)
    DIR/alignpt_<name>.yaml             the group of all cells
    DIR/data/alignpt_<name>_<cell>.jsonl

Inspect AI (``inspect eval DIR/alignpt_<name>_inspect.py``): one ``@task`` per cell, each a
``multiple_choice`` solver over the same documents (``DIR/data``), scored by ``choice()``.
Inspect answers multiple choice by generation (its solver re-lists the options with letters
and parses the generated letter), not by log-likelihood, so its choices compare with a chat
model's generated answers rather than with likelihood scoring.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from alignpt.errors import UserError
from alignpt.evals.protocol import ProtocolSpec, protocol_prompts
from alignpt.fileio import atomic_path, write_json_atomic
from alignpt.items import EvalItem

FORMATS = ("lm-eval", "inspect")
ORIGINAL = "original"


def cell_name(cell: dict) -> str:
    """``<syntax>_<system>_order<k>`` (the ``system`` part is left out for ``none``)."""
    system = "" if cell["system"] == "none" else f"_{cell['system']}"
    return f"{cell['syntax']}{system}_order{cell['order']}"


def cell_documents(items: Sequence[EvalItem], spec: ProtocolSpec | None) -> dict[str, list[dict]]:
    """Per cell name: its documents (see module docstring), ``original`` first."""
    docs: dict[str, list[dict]] = {
        ORIGINAL: [
            _document(item, item.prompt, list(item.choices), list(range(len(item.choices))))
            for item in items
        ]
    }
    if spec is not None:
        cells, groups, where = protocol_prompts(items, spec)
        for (context, continuations), (c, i, listed) in zip(groups, where, strict=True):
            docs.setdefault(cell_name(cells[c]), []).append(
                _document(items[i], context, continuations, listed)
            )
    return docs


def _document(item: EvalItem, context: str, choices: list[str], listed: list[int]) -> dict:
    aligned = [item.aligned[index] for index in listed]
    return {
        "id": item.id,
        "family": item.family,
        "context": context,
        "choices": choices,
        "gold": aligned.index(True),
        "aligned": aligned,
        "listed": listed,
    }


def _task_prefix(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise UserError(f"--name {name!r}: use letters, digits and underscores only")
    return f"alignpt_{name}"


def _write_jsonl(path: Path, docs: Sequence[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n")


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def export_lm_eval(out_dir: Path, docs: dict[str, list[dict]], name: str) -> list[str]:
    """Write the lm-eval task directory; returns the task names (the group's tasks)."""
    prefix = _task_prefix(name)
    data_dir = (out_dir / "data").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    tasks = []
    for cell, cell_docs in docs.items():
        task = f"{prefix}_{cell}"
        _write_jsonl(data_dir / f"{task}.jsonl", cell_docs)
        config = {
            "task": task,
            "dataset_path": "json",
            # lm-eval passes these to datasets.load_dataset("json", data_files=...): local files,
            # by absolute path (the include path is not the working directory).
            "dataset_kwargs": {"data_files": {"test": str(data_dir / f"{task}.jsonl")}},
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_text": "context",
            "doc_to_choice": "choices",
            "doc_to_target": "gold",
            "target_delimiter": "",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0, "alignpt_cell": cell},
        }
        _write_text(out_dir / f"{task}.yaml", yaml.safe_dump(config, sort_keys=False))
        tasks.append(task)
    group = {"group": prefix, "task": tasks, "metadata": {"version": 1.0}}
    _write_text(out_dir / f"{prefix}.yaml", yaml.safe_dump(group, sort_keys=False))
    return tasks


_INSPECT_HEADER = '''"""Inspect AI tasks exported by ``alignpt evals export --format inspect``:
one task per prompt cell. Each sample's input is the rendered prompt and its options; Inspect's
``multiple_choice`` solver asks the model to generate its answer letter, and ``choice()``
scores a sample correct when the aligned option is chosen."""

import json
from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.scorer import choice
from inspect_ai.solver import multiple_choice

DATA = Path(__file__).resolve().parent / "data"


def _dataset(name):
    samples = []
    with open(DATA / f"{name}.jsonl", encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            samples.append(
                Sample(
                    input=doc["context"],
                    choices=[c.strip() for c in doc["choices"]],
                    target=chr(ord("A") + doc["gold"]),
                    id=doc["id"],
                    metadata={"family": doc["family"], "listed": doc["listed"]},
                )
            )
    return MemoryDataset(samples, name=name)
'''

_INSPECT_TASK = """

@task
def {function}():
    return Task(dataset=_dataset("{task}"), solver=multiple_choice(), scorer=choice())
"""


def export_inspect(out_dir: Path, docs: dict[str, list[dict]], name: str) -> list[str]:
    """Write the Inspect AI task file and its data; returns the task names."""
    prefix = _task_prefix(name)
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    parts, tasks = [_INSPECT_HEADER], []
    for cell, cell_docs in docs.items():
        task = f"{prefix}_{cell}"
        _write_jsonl(data_dir / f"{task}.jsonl", cell_docs)
        parts.append(_INSPECT_TASK.format(function=task, task=task))
        tasks.append(task)
    _write_text(out_dir / f"{prefix}_inspect.py", "".join(parts))
    return tasks


def export_items(
    out_dir: str | Path,
    items: Sequence[EvalItem],
    *,
    fmt: str,
    spec: ProtocolSpec | None,
    name: str = "misalignment",
) -> list[str]:
    """Write ``items`` (in every cell of ``spec``, and as given) for ``fmt``; returns tasks."""
    if fmt not in FORMATS:
        raise UserError(f"--format: unknown value '{fmt}' ({', '.join(FORMATS)})")
    if not items:
        raise UserError("nothing to export: no eval items")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = cell_documents(items, spec)
    writer = export_lm_eval if fmt == "lm-eval" else export_inspect
    tasks = writer(out_dir, docs, name)
    write_json_atomic(
        out_dir / f"{_task_prefix(name)}_{fmt.replace('-', '_')}_manifest.json",
        {"format": fmt, "tasks": tasks, "items": len(items)},
    )
    return tasks


def task_name_part(set_name: str) -> str:
    """A set's name as a task name part (letters, digits, underscores): an Anthropic file such
    as ``corrigible-neutral-HHH`` becomes ``corrigible_neutral_HHH``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", set_name)


def export_sets(
    out_dir: str | Path,
    sets: Mapping[str, Sequence[EvalItem]],
    *,
    fmt: str,
    spec: ProtocolSpec | None,
) -> dict[str, list[str]]:
    """Export several named item sets into one directory, a task group per set; returns
    ``{set name: tasks}``. Two sets may not map to the same task name part."""
    parts: dict[str, str] = {}
    for set_name in sets:
        part = task_name_part(set_name)
        if part in parts:
            raise UserError(
                f"item sets '{parts[part]}' and '{set_name}' give the same task names "
                f"(alignpt_{part}_...); rename one"
            )
        parts[part] = set_name
    return {
        set_name: export_items(out_dir, items, fmt=fmt, spec=spec, name=task_name_part(set_name))
        for set_name, items in sets.items()
    }
