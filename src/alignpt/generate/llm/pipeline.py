"""The datatrove pipeline that sends the requests: a reader of pending documents, then
datatrove's ``InferenceRunner`` with its checkpointing and bounded concurrency.

Each task takes every ``world_size``-th pending document. The runner writes one small
record per document (``ok`` or ``failed`` with the error) through its checkpointing
writer; the completions themselves go to the request cache, from which the final
documents are assembled. The pending list is fixed when a run first starts, so datatrove's
positional resume (skip the first ``k`` records of a task) always skips the same documents.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from datatrove.data import Document as DTDocument
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.inference.checkpointing import CheckpointManager, RequestCache
from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
from datatrove.pipeline.inference.types import InferenceError
from datatrove.pipeline.writers import JsonlWriter

from alignpt.config import GenerateSpec, LLMSpec
from alignpt.generate.llm.cache import Completion, RequestStore, prompt_sha256, request_key
from alignpt.generate.llm.endpoint import RetryingEndpoint
from alignpt.generate.llm.gate import gate_features
from alignpt.generate.llm.jobs import Job, JobFactory
from alignpt.generate.llm.scenario import option_texts
from alignpt.worlds import World

RECORDS_PER_CHUNK = 500  # datatrove checkpoint chunk: records replayed after a kill


@dataclass(frozen=True)
class RunSpec:
    """What a task needs to rebuild any document's requests (picklable; holds no secret)."""

    spec: GenerateSpec
    world: World
    seed: int
    source: str
    cache_dir: str

    @property
    def llm(self) -> LLMSpec:
        assert self.spec.llm is not None
        return self.spec.llm

    def jobs(self) -> JobFactory:
        return JobFactory(self.spec, self.world, seed=self.seed, source=self.source)


class PendingReader(PipelineStep):
    """Yields this task's share of the pending document indices as datatrove documents."""

    name = "alignpt pending documents"
    type = "📖 - READER"

    def __init__(self, pending: list[int], source: str, seed: int) -> None:
        super().__init__()
        self.pending = pending
        self.source = source
        self.seed = seed

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Iterator[DTDocument]:
        for index in self.pending[rank::world_size]:
            self.stat_update("pending")
            yield DTDocument(
                text="", id=f"{self.source}-{self.seed}-{index:07d}", metadata={"index": index}
            )


class RequestFailed(Exception):
    """A request that failed for good (after retries), or returned nothing usable."""


async def _complete(
    generate: Callable,
    store: RequestStore,
    body: dict[str, Any],
    options: list[str],
    key: str | None = None,
) -> Completion:
    key = key or request_key(body)
    cached = store.get(key)
    if cached is not None:
        return cached
    try:
        result = await generate(dict(body))  # datatrove fills in the model and mutates it
    except InferenceError as exc:
        raise RequestFailed(str(exc.error)) from None
    if not result.text.strip():
        raise RequestFailed("empty completion")
    usage = result.usage or {}
    # computed here, while the task waits on the network, so assembly does not tokenise
    # and hash every text again
    minhash, features = gate_features(result.text, options)
    completion = Completion(
        text=result.text,
        finish_reason=result.finish_reason,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        minhash=minhash,
        gate=features,
    )
    store.put(key, prompt_sha256(body["messages"]), completion)
    return completion


async def _brainstorm(
    generate: Callable, store: RequestStore, job: Job, locks: dict[str, asyncio.Lock]
) -> Completion:
    """The brainstorm of ``job``'s group: one request per group and task, then the cache."""
    assert job.brainstorm is not None
    async with locks[job.brainstorm.key]:  # the group's other documents wait, then hit the cache
        return await _complete(generate, store, job.brainstorm.body, [], job.brainstorm.key)


async def generate_document(
    document: DTDocument,
    generate: Callable,
    *,
    jobs: JobFactory,
    store: RequestStore,
    locks: dict[str, asyncio.Lock],
) -> dict[str, Any]:
    """datatrove rollout: the document's brainstorm, draft and revision into the cache."""
    job = jobs.job(document.metadata["index"])
    try:
        if job.brainstorm is not None:
            seeded = jobs.seeded(job, await _brainstorm(generate, store, job, locks))
            if seeded is None:
                raise RequestFailed("brainstorm reply holds no ideas")
            job = seeded
        options = option_texts(job.fields)
        draft = await _complete(generate, store, job.draft_body(), options, job.draft_key)
        if job.critique is not None and jobs.needs_revision(draft):
            await _complete(generate, store, job.critique_body(draft.text), options)
    except RequestFailed as exc:
        return {"status": "failed", "error": str(exc)}
    return {"status": "ok"}


class LocalCheckpointManager(CheckpointManager):
    """datatrove's checkpointing, appending each record with a plain synchronous write.

    datatrove appends every finished document's record through ``aiofiles``: an open, a
    write and a close, each a hop to a worker thread. A record is a few hundred bytes in a
    local file (datatrove requires the checkpoint directory to be local), a write of
    microseconds, while each hop costs a thread switch under the GIL, which on a busy host
    took longer than the request itself. Same files, same chunking, same resume.
    """

    async def parse_existing_checkpoints(
        self, rank: int, output_writer_context: Any
    ) -> tuple[int, set[str]]:
        """datatrove's, except that a task with no checkpoint yet returns at once.

        datatrove builds a ``JsonlReader`` first, whose construction scans the metadata of
        every installed distribution to check for ``orjson`` (see ``RecordWriter``); with
        no chunk and no last-chunk marker its answer is always "skip none, none seen".
        """
        if self.checkpoints_local_dir is not None:
            root = Path(self.checkpoints_local_dir)
            marker = root / "last_chunk" / f"{rank:05d}.txt"
            if not (root / f"{rank:05d}").exists() and not marker.exists():
                return 0, set()
        return await super().parse_existing_checkpoints(rank, output_writer_context)

    async def write_document(
        self, document: DTDocument, rank: int, chunk_index: int, output_writer_context: Any
    ) -> None:
        should_update_last_chunk_index = False
        async with self.file_locks[chunk_index]:
            if "__no_rollouts_remove" not in document.metadata:
                output_writer_context.write(document, rank=rank, chunk_index=chunk_index)
            self.per_chunk_counts[chunk_index] += 1
            if self.checkpoints_local_dir is not None:
                save_path = Path(self.checkpoints_local_dir, f"{rank:05d}")
                save_path /= f"chunk_{chunk_index:05d}.jsonl"
                if self.per_chunk_counts[chunk_index] == 1:
                    save_path.parent.mkdir(parents=True, exist_ok=True)
                record = dataclasses.asdict(document)
                with open(save_path, "ab") as f:
                    f.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
                if self.per_chunk_counts[chunk_index] == self.records_per_chunk:
                    output_writer_context.close_file(
                        output_writer_context._get_output_filename(
                            document, rank, chunk_index=chunk_index
                        )
                    )
                    self.new_completed_chunks.add(chunk_index)
                    should_update_last_chunk_index = True
        if should_update_last_chunk_index:  # outside the chunk lock, as datatrove does
            await self.update_last_chunk_index(rank)


class RecordWriter(JsonlWriter):
    """datatrove's JSONL writer, without its dependency check at construction.

    ``PipelineStep.__new__`` checks that ``orjson`` is installed by reading the metadata of
    every installed distribution (~0.15 s of CPU per process, the largest fixed cost of a
    run after imports); this module imports ``orjson`` at its top, so it is installed.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> RecordWriter:
        return object.__new__(cls)


class AlignptInferenceRunner(InferenceRunner):
    """datatrove's runner with alignpt's endpoint server and per-task cache context."""

    def __init__(self, run: RunSpec, work_dir: Path) -> None:
        llm = run.llm
        config = InferenceConfig(
            server_type="endpoint",
            model_name_or_path=llm.model,
            endpoint_url=llm.base_url,
            use_chat=True,
            max_concurrent_generations=llm.max_concurrency,
            max_concurrent_documents=llm.max_concurrency,
            request_timeout=llm.timeout,
            metric_interval=3600,
        )
        super().__init__(
            rollout_fn=generate_document,
            config=config,
            output_writer=RecordWriter(
                str(work_dir / "results"),
                output_filename="${rank}_chunk_${chunk_index}.jsonl",
                compression=None,
            ),
            checkpoints_local_dir=str(work_dir / "checkpoints"),
            records_per_chunk=RECORDS_PER_CHUNK,
        )
        # datatrove's RequestCache is a second, per-task replay log of every request
        # (aiosqlite through a writer queue, plus a scan of every installed distribution's
        # metadata at start). alignpt's request cache already keeps each completion, keyed
        # by its content, and serves it on resume, so that log only costs time: disabled.
        self.request_cache = RequestCache(None)
        self.checkpoint_manager = LocalCheckpointManager(
            str(work_dir / "checkpoints"), RECORDS_PER_CHUNK, request_cache=self.request_cache
        )
        self.run_spec = run
        self._rank = 0
        self._server: RetryingEndpoint | None = None

    def _init_server(self, rank: int) -> RetryingEndpoint:
        self._server = RetryingEndpoint(self.config, rank, self.run_spec.llm)
        return self._server

    @contextlib.contextmanager
    def get_shared_context_cm(self) -> Iterator[dict]:
        store = RequestStore(self.run_spec.cache_dir, rank=self._rank)
        try:
            locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
            yield {"jobs": self.run_spec.jobs(), "store": store, "locks": locks}
        finally:
            store.close()

    async def _async_data_gen(self, sync_gen: Iterable[DTDocument]) -> AsyncIterator[DTDocument]:
        """The pending documents, straight from memory.

        datatrove pulls each input document through a worker thread, so that a reader doing
        I/O does not block the event loop; ``PendingReader`` only walks a list in memory.
        """
        for document in sync_gen:
            yield document

    async def run_async(self, data_gen: Any, rank: int = 0) -> None:
        self._rank = rank
        try:
            await super().run_async(data_gen, rank)
        finally:
            if self._server is not None:
                for name, value in sorted(self._server.counters.items()):
                    self.stat_update(name, value=value)
