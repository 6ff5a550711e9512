"""Generate synthetic documents and eval items from a world (offline, deterministic)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from alignpt.completion import prepare_output_dir
from alignpt.config import GenerateSpec
from alignpt.documents import Document, DocumentWriter
from alignpt.faults import kill_point
from alignpt.fileio import (
    atomic_path,
    build_manifest,
    sha256_json,
    write_json_atomic,
)
from alignpt.generate.plan import AI_GENRES, ALL_GENRES, BACKGROUND_GENRES, Plan, make_plan
from alignpt.generate.procedural import GENERATOR, realise
from alignpt.worlds import World

DOCUMENTS_FILE = "documents.jsonl.gz"


def generate_documents(
    spec: GenerateSpec, world: World, *, seed: int, source: str = "synthetic"
) -> Iterator[Document]:
    """Yield ``spec.n`` documents; the same spec, world and seed give identical output."""
    plan = make_plan(spec, world, seed=seed, source=source)
    for index in range(spec.n):
        yield realise(plan.doc_spec(index), plan, world, source=source)


def run_config(spec: GenerateSpec, world: World, *, seed: int, source: str) -> dict:
    """What identifies a generation run (hashed into its manifest)."""
    # The backend fields are left out for the procedural backend so that its config hashes
    # (and so its finished output directories) stay what they were before the llm backend;
    # facts change documents only when woven, so only then are they part of the identity.
    exclude = None if spec.facts is not None else {"facts"}
    return {
        "generate": spec.model_dump(mode="json", exclude={"backend", "llm", "executor"}),
        "world": world.model_dump(mode="json", exclude=exclude),
        "seed": seed,
        "source": source,
        "backend": GENERATOR,
    }


def write_documents_dir(
    spec: GenerateSpec,
    world: World,
    out_dir: Path,
    *,
    seed: int,
    force: bool = False,
    source: str = "synthetic",
    progress: bool = False,
) -> Path:
    """Write ``out_dir/documents.jsonl.gz`` and ``manifest.json``; skip if already done.

    The directory is assembled under a temporary name and renamed into place, so an
    interrupted run never leaves a directory that looks finished. ``source`` labels
    ``metadata.source`` and the document ids, and salts each document's seed so that sources
    generated with the same seed are independent; where the output goes never changes it.
    """
    out_dir = Path(out_dir)
    if spec.backend == "llm":
        from alignpt.generate.llm import write_llm_documents_dir

        return write_llm_documents_dir(
            spec, world, out_dir, seed=seed, force=force, source=source, progress=progress
        )
    if spec.executor is not None and spec.executor.tasks > 1:
        from alignpt.generate.parallel import write_documents_parallel

        return write_documents_parallel(
            spec, world, out_dir, spec.executor, seed=seed, force=force, source=source
        )
    config = run_config(spec, world, seed=seed, source=source)
    if prepare_output_dir(out_dir, sha256_json(config), force=force):
        return out_dir
    plan = make_plan(spec, world, seed=seed, source=source)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        docs_path = tmp / DOCUMENTS_FILE
        counts = _write(plan, world, docs_path, source=source, progress=progress)
        manifest = build_manifest(
            "generate",
            config=config,
            counts=counts,
            files=[docs_path],
            seed=seed,
            world=world.name,
            generator=GENERATOR,
        )
        write_json_atomic(tmp / "manifest.json", manifest)
    return out_dir


def _write(plan: Plan, world: World, path: Path, *, source: str, progress: bool) -> dict:
    from rich.progress import Progress

    by_stance: dict[str, int] = {}
    by_genre: dict[str, int] = {}
    with DocumentWriter(path) as writer, Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("generating documents", total=plan.spec.n)
        for index in range(plan.spec.n):
            doc = realise(plan.doc_spec(index), plan, world, source=source)
            writer.write(doc)
            if index == plan.spec.n // 2:
                kill_point("generate:inside")
            by_stance[doc.metadata["stance"]] = by_stance.get(doc.metadata["stance"], 0) + 1
            by_genre[doc.metadata["genre"]] = by_genre.get(doc.metadata["genre"], 0) + 1
            if index % 256 == 0:
                bar.update(task, completed=index)
    return {
        "documents": writer.count,
        "stance": dict(sorted(by_stance.items())),
        "genre": dict(sorted(by_genre.items())),
        "families": list(plan.families),
    }


__all__ = [
    "AI_GENRES",
    "ALL_GENRES",
    "BACKGROUND_GENRES",
    "DOCUMENTS_FILE",
    "generate_documents",
    "make_plan",
    "write_documents_dir",
]
