"""The procedural generator in parallel datatrove tasks, with the bytes of a serial run.

Every document is a pure function of ``(spec, world, seed, source, index)``
(``plan.doc_spec(index)``), so task ``r`` of ``W`` realises the indices ``i`` with
``i % W == r`` into ``parts/<r>.jsonl``. Once every task has finished, the parts are
interleaved back into index order and written through the same ``DocumentWriter`` as
:func:`alignpt.generate.write_documents_dir`: ``documents.jsonl.gz`` and the manifest are
byte-identical to a serial run, whatever the number of tasks.

The tasks run on the executor that an ``executor:`` block selects (``alignpt.executors``:
local processes, Slurm or Ray); datatrove's completion markers let a killed run resume at
its unfinished tasks. The LLM backend is not split (it has its own request concurrency).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from alignpt.completion import prepare_output_dir
from alignpt.config import GenerateSpec
from alignpt.documents import Document, DocumentWriter, read_documents
from alignpt.errors import UserError
from alignpt.executors import ExecutorConfig, build_executor
from alignpt.fileio import atomic_path, build_manifest, sha256_json, write_json_atomic
from alignpt.generate import DOCUMENTS_FILE, run_config
from alignpt.generate.plan import make_plan
from alignpt.generate.procedural import GENERATOR, realise
from alignpt.worlds import World

PARTS = "parts"


class GenerateSliceStep(PipelineStep):
    """Task ``rank`` of ``world_size``: realise indices ``rank, rank + W, ...`` into a part."""

    name = "generate slice"
    type = "🌱 - GENERATE"

    def __init__(self, spec: GenerateSpec, world: World, seed: int, source: str, parts: str):
        super().__init__()
        self.spec, self.world, self.seed, self.source = spec, world, seed, source
        self.parts = parts

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        plan = make_plan(self.spec, self.world, seed=self.seed, source=self.source)
        with DocumentWriter(Path(self.parts) / f"{rank:05d}.jsonl") as writer:
            for index in range(rank, self.spec.n, world_size):
                with self.track_time():
                    writer.write(
                        realise(plan.doc_spec(index), plan, self.world, source=self.source)
                    )
                self.stat_update("documents")
        yield from ()


def _interleaved(parts: Path, tasks: int, n: int) -> Iterator[Document]:
    """Documents in index order: index ``i`` is the next one of part ``i % tasks``."""
    readers = [iter(read_documents(parts / f"{rank:05d}.jsonl")) for rank in range(tasks)]
    for index in range(n):
        doc = next(readers[index % tasks], None)
        if doc is None or doc.metadata.get("index") != index:
            raise UserError(f"{parts}: part {index % tasks} lacks document {index}; run again")
        yield doc


def write_documents_parallel(
    spec: GenerateSpec,
    world: World,
    out_dir: Path,
    executor: ExecutorConfig,
    *,
    seed: int,
    force: bool = False,
    source: str = "synthetic",
    work_dir: Path | None = None,
) -> Path:
    """``write_documents_dir``'s output, generated in ``executor.tasks`` datatrove tasks.

    ``work_dir`` (default: ``<out_dir>.work``) holds the parts and datatrove's logs and
    completion markers until the output is in place.
    """
    if spec.backend != "procedural":
        raise UserError("generate.executor: only the procedural backend runs in parallel tasks")
    out_dir = Path(out_dir)
    config = run_config(spec, world, seed=seed, source=source)
    key = sha256_json(config)
    if prepare_output_dir(out_dir, key, force=force):
        return out_dir
    work = Path(work_dir) if work_dir else out_dir.with_name(out_dir.name + ".work")
    # the work folder belongs to one config and one task count: otherwise start it over
    stamp = work / "key"
    expected = f"{key} {executor.tasks}"
    if work.exists() and (not stamp.is_file() or stamp.read_text() != expected):
        shutil.rmtree(work)
    (work / PARTS).mkdir(parents=True, exist_ok=True)
    stamp.write_text(expected)
    step = GenerateSliceStep(spec, world, seed, source, str(work / PARTS))
    runner = build_executor(executor, [step], work / "logs", where="generate.executor")
    runner.run()
    incomplete = runner.get_incomplete_ranks(skip_completed=True)
    if incomplete:
        raise UserError(
            f"generate: tasks {incomplete[:10]} did not finish (logs in {work}/logs); "
            "run again to resume"
        )
    by_stance: dict[str, int] = {}
    by_genre: dict[str, int] = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        docs_path = tmp / DOCUMENTS_FILE
        with DocumentWriter(docs_path) as writer:
            for doc in _interleaved(work / PARTS, executor.tasks, spec.n):
                writer.write(doc)
                stance, genre = doc.metadata["stance"], doc.metadata["genre"]
                by_stance[stance] = by_stance.get(stance, 0) + 1
                by_genre[genre] = by_genre.get(genre, 0) + 1
        counts = {
            "documents": writer.count,
            "stance": dict(sorted(by_stance.items())),
            "genre": dict(sorted(by_genre.items())),
            "families": list(make_plan(spec, world, seed=seed, source=source).families),
        }
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
    shutil.rmtree(work)
    return out_dir
