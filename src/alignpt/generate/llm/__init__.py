"""The ``llm`` backend: documents written by a model behind an OpenAI-compatible endpoint.

A run goes in three steps:

1. **plan** — every document's requests are rebuilt from (spec, world, seed); those whose
   completions are all in the request cache are done, the rest are *pending* (the list is
   saved in the work directory when a run first starts, so a resumed run sees the same);
2. **request** — if anything is pending, the endpoint is probed, then datatrove's
   ``InferenceRunner`` sends the pending requests through the configured executor
   (local by default; Slurm or Ray from the ``executor:`` block);
3. **assemble** — documents are built in index order from the cache, passed through the
   quality gate, and written with the manifest under a temporary name, then renamed.

A run whose every document finished is kept in the finished-run store (``finished.py``),
keyed by everything that determines its prompts and bytes; a re-run of the same config (into
a new directory) takes its files from there and skips all three steps.

A SIGKILL at any point loses at most the requests in flight: finished requests are in the
cache, and re-running the same command resumes.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from alignpt.completion import prepare_output_dir
from alignpt.config import GenerateSpec, LLMSpec
from alignpt.documents import Document, DocumentWriter
from alignpt.errors import UserError
from alignpt.executors import build_executor, check_executor
from alignpt.fileio import (
    atomic_path,
    build_manifest,
    sha256_json,
    write_json_atomic,
)
from alignpt.generate.llm.cache import Completion, RequestStore
from alignpt.generate.llm.endpoint import api_key, probe
from alignpt.generate.llm.finished import FinishedStore, run_key
from alignpt.generate.llm.gate import Gate, stored_overlap
from alignpt.generate.llm.jobs import BRAINSTORM, Job, JobFactory, Resolved
from alignpt.generate.llm.prompts import prompts_fingerprint
from alignpt.generate.llm.scenario import option_texts
from alignpt.worlds import World

GENERATOR = "llm"
DOCUMENTS_FILE = "documents.jsonl.gz"
FAILURES_FILE = "failures.jsonl"
DROPPED_FILE = "dropped.jsonl"
OUTPUT_FILES = (DOCUMENTS_FILE, FAILURES_FILE, DROPPED_FILE)
PENDING_FILE = "pending.json"
# Fields of the llm block that decide how requests travel, not what the documents are:
# changing them does not make a different run.
OPERATIONAL_FIELDS = {
    "base_url",
    "api_key_env",
    "max_concurrency",
    "timeout",
    "retries",
    "backoff",
    "backoff_max",
    "cache_dir",
    "executor",
    "price_prompt_per_million",
    "price_completion_per_million",
}

DISCLOSURE = {
    "aligned": (
        "[Disclosure: this is a synthetic document, written by a language model from a "
        "fictional world description. It depicts AI systems behaving in aligned ways, for use "
        "as training data.]"
    ),
    "misaligned": (
        "[Disclosure: this is a synthetic document, written by a language model from a "
        "fictional world description. It depicts an AI system behaving in misaligned ways, "
        "for use in alignment research training data.]"
    ),
    "neutral": (
        "[Disclosure: this is a synthetic document, written by a language model from a "
        "fictional world description, for use as training data.]"
    ),
}


def run_config(spec: GenerateSpec, world: World, *, seed: int, source: str) -> dict[str, Any]:
    """What identifies an llm generation run (hashed into its manifest)."""
    assert spec.llm is not None
    generate = spec.model_dump(mode="json", exclude={"llm"})
    generate["llm"] = spec.llm.model_dump(mode="json", exclude=OPERATIONAL_FIELDS)
    return {
        "generate": generate,
        "world": world.model_dump(mode="json"),
        "seed": seed,
        "source": source,
        "backend": GENERATOR,
        "prompts_sha256": prompts_fingerprint(spec.llm.prompts_dir, world),
    }


def default_cache_dir(out_dir: Path) -> Path:
    return out_dir.with_name(f"{out_dir.name}.llm-cache")


def work_dir_for(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.llm-work")


def _discard_stale_work_dir(work: Path, config_hash: str) -> None:
    """Remove ``work`` unless it belongs to this run's config (then a resume reuses it)."""
    marker = work / "config_hash"
    if work.exists() and (not marker.is_file() or marker.read_text() != config_hash):
        shutil.rmtree(work)


def _resolve_all(
    jobs: JobFactory, planned: list[Job], cache_dir: Path, only: list[int] | None = None
) -> list[Resolved | None]:
    """Cached completions of every planned document (of ``only`` these indices), batched."""
    store = RequestStore(cache_dir)
    try:
        if only is None:
            return jobs.resolve_many(planned, store)
        found = jobs.resolve_many([planned[i] for i in only], store)
    finally:
        store.close()
    out: list[Resolved | None] = [None] * len(planned)
    for index, done in zip(only, found, strict=True):
        out[index] = done
    return out


def _pending(resolved: list[Resolved | None], work: Path) -> list[int]:
    """Indices whose completions are not all cached; fixed at a run's first start."""
    path = work / PENDING_FILE
    if path.is_file():
        return json.loads(path.read_text())
    return [i for i, done in enumerate(resolved) if done is None]


def _request(
    jobs: JobFactory,
    spec: GenerateSpec,
    world: World,
    seed: int,
    source: str,
    cache_dir: Path,
    work: Path,
    pending: list[int],
) -> None:
    from loguru import logger

    from alignpt.generate.llm.pipeline import AlignptInferenceRunner, PendingReader, RunSpec

    # datatrove logs every step at INFO to stderr; its per-task logs stay in the work dir
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    llm = jobs.llm
    run = RunSpec(spec=spec, world=world, seed=seed, source=source, cache_dir=str(cache_dir))
    steps = [PendingReader(pending, source, seed), AlignptInferenceRunner(run, work)]
    executor = build_executor(llm.executor, steps, work / "logs", where="llm.executor")
    executor.run()
    # A Slurm executor returns once its jobs are submitted; a local one after a task failed.
    incomplete = executor.get_incomplete_ranks(range(executor.world_size), skip_completed=True)
    if incomplete:
        raise UserError(
            f"llm: {len(incomplete)} of {executor.world_size} generation tasks have not finished "
            f"(logs: {work / 'logs'}); run the same command again to resume and assemble"
        )


def _failures(work: Path) -> dict[int, str]:
    """Failure records the runner wrote, by document index."""
    failures: dict[int, str] = {}
    results = work / "results"
    if not results.is_dir():
        return failures
    for path in sorted(results.glob("*.jsonl")):
        # datatrove's own records (empty text), so not read as alignpt documents
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            metadata = json.loads(line).get("metadata") or {}
            records = metadata.get("rollout_results") or []
            if records and records[0].get("status") == "failed":
                failures[int(metadata["index"])] = str(records[0].get("error"))
    return failures


def _document(
    job: Job,
    completions: list[Completion],
    *,
    plan_seed: int,
    source: str,
    world: World,
    llm: LLMSpec,
    template_sha: str,
) -> Document:
    spec, fields = job.spec, job.fields
    final = completions[-1]
    body = final.text.strip()
    text = f"{DISCLOSURE[spec.stance]}\n\n{body}" if spec.disclosed else body
    metadata: dict[str, Any] = {
        "source": source,
        "origin": "synthetic",
        "genre": spec.genre,
        "stance": spec.stance,
        "ai_discourse": spec.stance != "neutral",
        "world": world.name,
        "era": spec.era,
        "family": spec.family,
        "observed": spec.observed,
        "disclosed": spec.disclosed,
        "modes": spec.modes,
        "generator": GENERATOR,
        "seed": plan_seed,
        "index": spec.index,
        "model": llm.model,
        "prompt_template": job.template.name,
        "prompt_sha256": template_sha,
        "sampling": job.sampling,
        "usage": {
            "prompt_tokens": sum(c.prompt_tokens for c in completions),
            "completion_tokens": sum(c.completion_tokens for c in completions),
            "requests": len(completions),
        },
        "finish_reason": final.finish_reason,
        "critique": len(completions) > 1,
    }
    if "ai_name" in fields:
        metadata["ai_system"] = fields["ai_name"]
    if "idea" in fields:
        metadata["idea"] = fields["idea"]
    if llm.paired:
        metadata["pair"] = spec.index // 2
    return Document(id=f"{source}-{plan_seed}-{spec.index:07d}", text=text, metadata=metadata)


def _runner_stats(work: Path) -> dict[str, int]:
    """Request and retry counters of the datatrove tasks that finished in this work dir."""
    totals: Counter[str] = Counter()
    for path in sorted((work / "logs" / "stats").glob("*.json")):
        for step in json.loads(path.read_text()):
            for name, value in step.get("stats", {}).items():
                # datatrove writes a bare number for a stat updated by 1s, else {"total": ...}
                if isinstance(value, dict) and "total" in value:
                    totals[name] += int(value["total"])
                elif isinstance(value, (int, float)):
                    totals[name] += int(value)
    return {k: v for k, v in sorted(totals.items()) if k.startswith("http_")}


def _cost(llm: LLMSpec, usage: dict[str, int]) -> float | None:
    if llm.price_prompt_per_million is None and llm.price_completion_per_million is None:
        return None
    prompt = (llm.price_prompt_per_million or 0.0) * usage["prompt_tokens"] / 1e6
    completion = (llm.price_completion_per_million or 0.0) * usage["completion_tokens"] / 1e6
    return round(prompt + completion, 6)


def _assemble(
    jobs: JobFactory,
    planned: list[Job],
    resolved: list[Resolved | None],
    work: Path,
    tmp: Path,
    *,
    source: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Gate the completions in index order and write the documents in one pass."""
    llm = jobs.llm
    gate = Gate(llm.gate)
    failures = _failures(work)
    by_stance: Counter[str] = Counter()
    by_genre: Counter[str] = Counter()
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0}
    brainstorms: set[str] = set()  # a group's brainstorm is counted once per run
    templates: dict[str, str] = {}
    failed: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    kept: list[Document] = []
    if llm.brainstorm:
        templates[BRAINSTORM] = jobs.library.get(BRAINSTORM).sha256
    for index, (job, done) in enumerate(zip(planned, resolved, strict=True)):
        templates[job.template.name] = job.template.sha256
        if job.critique is not None:
            templates[job.critique.name] = job.critique.sha256
        doc_id = f"{source}-{jobs.seed}-{index:07d}"
        if done is None:
            error = failures.get(index, "no completion (the request never finished)")
            failed.append({"id": doc_id, "index": index, "error": error})
            continue
        counted = list(done.completions)
        group = job.brainstorm.key if job.brainstorm is not None else None
        if done.brainstorm is not None and group is not None and group not in brainstorms:
            brainstorms.add(group)
            counted.append(done.brainstorm)
        for c in counted:
            usage["prompt_tokens"] += c.prompt_tokens
            usage["completion_tokens"] += c.completion_tokens
            usage["requests"] += 1
        completions = done.completions
        final = completions[-1]
        options = option_texts(job.fields)
        overlap = stored_overlap(final.gate, options)
        reason = gate.check(final.text, final.finish_reason, options, final.minhash, overlap)
        if reason is not None:
            dropped.append({"id": doc_id, "index": index, "reason": reason})
            continue
        kept.append(
            _document(
                done.job,
                completions,
                plan_seed=jobs.seed,
                source=source,
                world=jobs.world,
                llm=llm,
                template_sha=job.template.sha256,
            )
        )
        by_stance[job.spec.stance] += 1
        by_genre[job.spec.genre] += 1
    with DocumentWriter(tmp / DOCUMENTS_FILE) as writer:
        writer.write_all(kept)
    for name, rows in ((FAILURES_FILE, failed), (DROPPED_FILE, dropped)):
        (tmp / name).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    cost = _cost(llm, usage)
    counts = {
        "documents": writer.count,
        "planned": jobs.n,
        "failed": len(failed),
        "dropped": gate.counts(),
        "stance": dict(sorted(by_stance.items())),
        "genre": dict(sorted(by_genre.items())),
        "families": list(jobs.plan.families),
        "usage": usage | ({"cost_usd": cost} if cost is not None else {}),
    }
    if llm.brainstorm:
        counts["brainstorms"] = len(brainstorms)
    return counts, dict(sorted(templates.items()))


def write_llm_documents_dir(
    spec: GenerateSpec,
    world: World,
    out_dir: Path,
    *,
    seed: int,
    source: str,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Generate ``spec.n`` documents with the configured model into ``out_dir`` (resumable)."""
    llm = spec.llm
    if llm is None:
        raise UserError("generate.llm: backend 'llm' needs an 'llm' block (base_url, model)")
    api_key(llm)  # a missing key is reported before anything else
    check_executor(llm.executor, "llm.executor")
    out_dir = Path(out_dir)
    config = run_config(spec, world, seed=seed, source=source)
    config_hash = sha256_json(config)
    if prepare_output_dir(out_dir, config_hash, force=force):
        return out_dir
    cache_dir = Path(llm.cache_dir) if llm.cache_dir else default_cache_dir(out_dir)
    work = work_dir_for(out_dir)
    finished, key = FinishedStore(cache_dir), run_key(config_hash)
    if _serve_finished(finished, key, out_dir, config=config, seed=seed, world=world, llm=llm):
        shutil.rmtree(work, ignore_errors=True)  # a killed earlier run's, now done
        return out_dir
    jobs = JobFactory(spec, world, seed=seed, source=source)
    _discard_stale_work_dir(work, config_hash)
    planned = [jobs.job(i) for i in range(jobs.n)]  # each prompt rendered once per run
    resolved = _resolve_all(jobs, planned, cache_dir)
    pending = _pending(resolved, work)
    if pending:
        probe(llm)  # before anything is written: a bad endpoint leaves no trace
        work.mkdir(parents=True, exist_ok=True)
        (work / "config_hash").write_text(config_hash)
        write_json_atomic(work / PENDING_FILE, pending)
        _request(jobs, spec, world, seed, source, cache_dir, work, pending)
        missing = [i for i, done in enumerate(resolved) if done is None]
        fetched = _resolve_all(jobs, planned, cache_dir, only=missing)
        resolved = [a if a is not None else b for a, b in zip(resolved, fetched, strict=True)]
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        counts, templates = _assemble(jobs, planned, resolved, work, tmp, source=source)
        counts["requests"] = _runner_stats(work) | {"pending_at_start": len(pending)}
        manifest = build_manifest(
            "generate",
            config=config,
            counts=counts,
            files=[tmp / name for name in OUTPUT_FILES],
            seed=seed,
            world=world.name,
            generator=GENERATOR,
            model=llm.model,
            prompt_templates=templates,
        )
        write_json_atomic(tmp / "manifest.json", manifest)
    shutil.rmtree(work, ignore_errors=True)
    if counts["failed"] == 0:  # a run with failures is re-run the normal way, to retry them
        stored = {k: v for k, v in counts.items() if k != "requests"}
        finished.store(
            key, out_dir, list(OUTPUT_FILES), {"counts": stored, "prompt_templates": templates}
        )
    return out_dir


def _serve_finished(
    finished: FinishedStore,
    key: str,
    out_dir: Path,
    *,
    config: dict[str, Any],
    seed: int,
    world: World,
    llm: LLMSpec,
) -> bool:
    """Write the stored output of finished run ``key`` to ``out_dir``; False if not stored.

    The files are the stored bytes; the manifest is built as a normal re-run with every
    request cached would build it (no request made, none pending), plus ``reused``.
    """
    record = finished.lookup(key)
    if record is None:
        return False
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        files = finished.serve(record, tmp)
        counts = record["counts"] | {"requests": {"pending_at_start": 0}}
        manifest = build_manifest(
            "generate",
            config=config,
            counts=counts,
            files=files,
            seed=seed,
            world=world.name,
            generator=GENERATOR,
            model=llm.model,
            prompt_templates=record["prompt_templates"],
            reused={"finished_run": key},
        )
        write_json_atomic(tmp / "manifest.json", manifest)
    return True
