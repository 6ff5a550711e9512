"""``run_curate``: a corpus → detect → act → curated documents, as datatrove pipelines.

Layout of the output directory::

    documents/main/<rank>.jsonl    every kept document (tagged, disclosed) and upsampled copies
    documents/refill/<rank>.jsonl  copies that replace filtered-out text (``replace_tokens``)
    work/                          datatrove logging dirs (completions, stats), bad-line reports
    manifest.json                  written last: settings, statistics, bad lines, file hashes

The datatrove executors own task splitting and completion markers, so a killed run resumes
at its unfinished tasks; a finished run whose settings match is reused.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from alignpt.completion import is_complete
from alignpt.config import CurateSpec
from alignpt.documents import document_files
from alignpt.errors import UserError
from alignpt.executors import ExecutorConfig, build_executor, check_executor
from alignpt.fileio import (
    MANIFEST,
    build_manifest,
    read_manifest,
    sha256_file,
    sha256_json,
    write_json_atomic,
)

from .blocklist import Blocklist
from .classifier import CLASSIFIER_FILE, default_classifier_dir, load_classifier
from .readers import bad_lines, build_readers
from .steps import (
    BlocklistStep,
    ClassifierStep,
    DecideStep,
    DiscloseStep,
    FilterStep,
    RefillStep,
    TagStep,
    UpsampleStep,
)
from .tokens import load_tokenizer, tokenizer_file

DOCUMENTS = "documents"
SETTINGS = "settings.json"
SHOWN_BAD_LINES = 20


@dataclass
class CurateResult:
    """A finished curate run: where its documents are, and its manifest."""

    dir: Path
    documents: Path
    manifest: dict[str, Any]
    reused: bool = False

    @property
    def stats(self) -> dict[str, Any]:
        return self.manifest["stats"]


def default_header() -> str:
    """The packaged synthetic-data disclosure header."""
    data = resources.files("alignpt.curate") / "data" / "disclosure.txt"
    return data.read_text(encoding="utf-8").strip()


def input_fingerprint(source: Path) -> dict[str, str]:
    """sha256 of every input file's bytes, by name relative to the source folder.

    Content, not size and modification time: a copied, touched or rewritten corpus is
    recognised by what it holds. Hashing streams each file once (about the cost of reading it).
    """
    base = source if source.is_dir() else source.parent
    return {str(f.relative_to(base)): sha256_file(f) for f in document_files(source)}


def curate_settings(spec: CurateSpec, source: Path, seed: int) -> dict[str, Any]:
    """Everything that determines a curate run's output, by content (the workers do not).

    The spec, the seed, and content hashes of the inputs, the term lists (a list named by
    file or packaged name is hashed by its terms, so an edited list is a new run), the
    classifier weights, the refill tokenizer and the disclosure header.
    """
    classifier = spec.classifier
    classifier_hash = None
    if classifier.enabled:
        directory = Path(classifier.path) if classifier.path else default_classifier_dir()
        classifier_hash = sha256_file(directory / CLASSIFIER_FILE)
    terms = Blocklist.from_spec(spec.blocklist).lists if spec.blocklist.enabled else None
    filter_action = spec.actions.filter
    tokenizer = filter_action.tokenizer if filter_action is not None else None
    disclose = spec.actions.disclose
    return {
        "spec": spec.model_dump(mode="json", exclude={"executor": {"workers"}}),
        "seed": seed,
        "inputs": input_fingerprint(source),
        "term_lists": sha256_json(terms) if terms is not None else None,
        "classifier": classifier_hash,
        "tokenizer": sha256_file(tokenizer_file(tokenizer)) if tokenizer else None,
        "header": (disclose.header or default_header()) if disclose is not None else None,
    }


def check_spec(spec: CurateSpec, where: str = "curate") -> None:
    """Every check that can fail before work starts: executor, term lists, classifier."""
    check_executor(spec.executor, f"{where}.executor")
    if spec.blocklist.enabled:
        Blocklist.from_spec(spec.blocklist, f"{where}.blocklist")
    if spec.classifier.enabled:
        load_classifier(spec.classifier.path, f"{where}.classifier.path")
    if spec.actions.filter is not None and spec.actions.filter.tokenizer:
        load_tokenizer(spec.actions.filter.tokenizer, f"{where}.actions.filter.tokenizer")


def threads_per_worker(executor: ExecutorConfig) -> int | None:
    """Torch threads per worker: its share of the cores (None: one in-process worker)."""
    if executor.kind == "slurm" and executor.slurm is not None:
        return executor.slurm.cpus_per_task
    if executor.kind == "ray":
        return executor.ray.cpus_per_task if executor.ray is not None else 1
    parallel = executor.tasks if executor.workers < 1 else min(executor.workers, executor.tasks)
    if parallel <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // parallel)


def detect_and_act_steps(spec: CurateSpec, seed: int) -> list[Any]:
    """The steps between the readers and the writer, in order."""
    steps: list[Any] = []
    if spec.blocklist.enabled:
        steps.append(BlocklistStep(spec.blocklist))
    if spec.classifier.enabled:
        steps.append(
            ClassifierStep(
                spec.classifier.path,
                escalate=spec.classifier.escalate,
                threads=threads_per_worker(spec.executor),
            )
        )
    steps.append(DecideStep(spec.detect, spec.classifier.threshold))
    actions = spec.actions
    if actions.filter is not None:
        steps.append(FilterStep(actions.filter.drop, actions.filter.tokenizer))
    if actions.tag is not None:
        steps.append(TagStep(actions.tag, spec.classifier.path))
    if actions.disclose is not None:
        steps.append(DiscloseStep(actions.disclose.header or default_header()))
    if actions.upsample is not None:
        steps.append(UpsampleStep(actions.upsample.target, actions.upsample.factor, seed))
    return steps


def step_stats(logging_dir: Path) -> dict[str, dict[str, float]]:
    """Per step, per label: totals summed over every task's stats file."""
    totals: dict[str, dict[str, float]] = {}
    for file in sorted((logging_dir / "stats").glob("*.json")):
        for step in json.loads(file.read_text()):
            name = step["name"].split(": ", 1)[-1]
            into = totals.setdefault(name, {})
            for label, value in step.get("stats", {}).items():
                total = value.get("total", 0) if isinstance(value, dict) else value
                into[label] = into.get(label, 0) + total
    return {name: dict(sorted(labels.items())) for name, labels in totals.items()}


def preload_worker_imports(classifier: bool) -> None:
    """Import the pipeline's heavy modules once, in datatrove's fork server.

    Local workers start from the ``forkserver`` method: each is a fresh interpreter that
    would import torch and sentence-transformers again (tens of seconds on a busy machine).
    Preloaded in the fork server, every worker forks with them imported and only loads the
    MiniLM weights (~2 s, once per worker process; its tasks share them). Takes effect when
    the fork server starts, i.e. before the first multi-worker run of the process.
    """
    import multiprocess

    modules = ["__main__", "alignpt.curate.steps"]
    if classifier:
        modules += ["torch", "sentence_transformers"]
    multiprocess.get_context("forkserver").set_forkserver_preload(modules)


def _run(executor_config: ExecutorConfig, steps: list[Any], logging_dir: Path) -> None:
    """Run ``steps`` on the configured executor; fail with one line if a task did not finish."""
    if executor_config.kind == "local" and executor_config.workers != 1:
        preload_worker_imports(any(isinstance(s, ClassifierStep) for s in steps))
    executor = build_executor(executor_config, steps, logging_dir, where="curate.executor")
    try:
        executor.run()
    except UserError:
        raise  # a bad line with on_bad_line: stop, raised inside a task
    except Exception as exc:
        raise UserError(
            f"curate: a pipeline task failed ({exc}); logs in {logging_dir}/logs"
        ) from exc
    incomplete = executor.get_incomplete_ranks(skip_completed=True)
    if incomplete and executor_config.kind == "slurm":
        raise UserError(
            f"curate: {len(incomplete)} tasks submitted to Slurm (logs in {logging_dir}); "
            "run the same command again once they finish to collect the output"
        )
    if incomplete:
        raise UserError(
            f"curate: tasks {incomplete[:10]} did not finish; logs in {logging_dir}/logs "
            "(run again to resume)"
        )


def _writer(folder: Path) -> Any:
    from datatrove.pipeline.writers import JsonlWriter

    # Uncompressed: gzip headers carry a time stamp, and the same input must give the same bytes.
    return JsonlWriter(str(folder), output_filename="${rank}.jsonl", compression=None)


def run_curate(
    spec: CurateSpec, source: str | Path, out: str | Path, *, seed: int = 0, where: str = "curate"
) -> CurateResult:
    """Curate the documents at ``source`` into ``out`` (reused when finished and unchanged)."""
    source, out = Path(source), Path(out)
    check_spec(spec, where)
    if spec.executor.kind != "local" and not str(out).startswith("/"):
        out = out.resolve()
    settings = curate_settings(spec, source, seed)
    key = sha256_json(settings)
    if is_complete(out, key):
        return CurateResult(out, out / DOCUMENTS, read_manifest(out), reused=True)
    work = out / "work"
    started = work / SETTINGS
    if out.exists() and (
        not started.is_file() or json.loads(started.read_text()).get("key") != key
    ):
        shutil.rmtree(out)  # a different (or unknown) run: start over, never mix outputs
    work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(started, {"key": key, "settings": settings})

    readers = build_readers(source, work / "inputs", on_bad_line=spec.on_bad_line)
    steps = [*readers, *detect_and_act_steps(spec, seed), _writer(out / DOCUMENTS / "main")]
    _run(spec.executor, steps, work / "detect")
    stats = step_stats(work / "detect")

    refill = spec.actions.filter is not None and spec.actions.filter.replace_tokens
    if refill:
        from datatrove.pipeline.readers import JsonlReader

        counts = stats.get("filter", {})
        tokenizer = spec.actions.filter.tokenizer
        unit = "tokens" if tokenizer else "chars"
        rate = counts.get(f"dropped_{unit}", 0) / max(1, counts.get(f"kept_{unit}", 0))
        refill_steps = [
            JsonlReader(str(out / DOCUMENTS / "main"), add_file_path=False),
            RefillStep(rate, seed, tokenizer),
            _writer(out / DOCUMENTS / "refill"),
        ]
        _run(spec.executor, refill_steps, work / "refill")
        stats.update(step_stats(work / "refill"))
        stats["refill"] = {**stats.get("refill", {}), f"rate_{unit}": round(rate, 6)}
        stats["refill"]["rate"] = round(rate, 6)

    bad = bad_lines(work / "inputs")
    reader_stats = {k: v for k, v in stats.items() if k.startswith("🐿") or "Jsonl" in k}
    files = sorted((out / DOCUMENTS).rglob("*.jsonl"))
    manifest = build_manifest(
        "curate",
        config=settings,
        counts=summary(stats),
        files=[],
        seed=seed,
        inputs=settings["inputs"],
        stats={k: v for k, v in stats.items() if k not in reader_stats},
        bad_lines={"count": len(bad), "first": bad[:SHOWN_BAD_LINES]},
        outputs={str(f.relative_to(out)): sha256_file(f) for f in files},
        key=key,
    )
    write_json_atomic(out / MANIFEST, manifest)
    return CurateResult(out, out / DOCUMENTS, manifest)


def summary(stats: dict[str, dict[str, float]]) -> dict[str, int]:
    """The headline counts: read, AI discourse, kept, dropped, tagged, upsampled, refilled."""
    decide = stats.get("decide", {})
    filt = stats.get("filter", {})
    return {
        "documents": int(decide.get("documents", 0)),
        "ai_discourse": int(decide.get("ai_discourse", 0)),
        "kept": int(filt.get("kept", decide.get("documents", 0))),
        "dropped": int(filt.get("dropped", 0)),
        "tagged": int(stats.get("tag", {}).get("tagged", 0)),
        "disclosed": int(stats.get("disclose", {}).get("disclosed", 0)),
        "upsampled_copies": int(stats.get("upsample", {}).get("copies", 0)),
        "refill_copies": int(stats.get("refill", {}).get("copies", 0)),
    }
