"""A source's token shard built in parallel datatrove tasks, with the bytes of a serial build.

Task ``r`` of ``W`` tokenizes the documents whose position ``i`` in the source satisfies
``i % W == r`` into ``parts/<r>/`` (token ids, per-document lengths, id and metadata lines).
Once every task has finished, the parts are interleaved back into source order and written
in the same batches, through the same datatrove ``TokenizedFile`` and gzip stream, as
:func:`alignpt.shards.write_shard`: the shard is byte-identical to a serial build,
whatever the number of tasks. Tasks run on the executor of the experiment's ``executor:``
block (``alignpt.executors``: local processes, Slurm or Ray); datatrove's completion markers
let a killed build resume at its unfinished tasks.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from alignpt.documents import Document, read_documents
from alignpt.errors import UserError
from alignpt.executors import ExecutorConfig, build_executor
from alignpt.fileio import atomic_path, sha256_json, write_json_atomic
from alignpt.shards import (
    DOCS_FILE,
    ENCODE_BATCH,
    TOKENS_FILE,
    batched,
    load_encoder,
    stance_of,
    token_size_for,
)

IDS, LENGTHS, META = "ids.bin", "lengths.npy", "meta.jsonl"


def _dtype(token_size: int) -> np.dtype:
    return np.dtype("<u4" if token_size == 4 else "<u2")


class TokenizeSliceStep(PipelineStep):
    """Task ``rank`` of ``world_size``: tokenize every ``world_size``-th document of a source."""

    name = "tokenize slice"
    type = "🔢 - TOKENIZE"

    def __init__(
        self,
        source: str,
        parts: str,
        tokenizer_dir: str,
        eos_token: str,
        transform: Callable[[Document], Document] | None = None,
    ) -> None:
        super().__init__()
        self.source, self.parts = source, parts
        self.tokenizer_dir, self.eos_token = tokenizer_dir, eos_token
        self.transform = transform

    def _mine(self, rank: int, world_size: int) -> Iterator[Document]:
        for index, doc in enumerate(read_documents(self.source)):
            if index % world_size == rank:
                yield self.transform(doc) if self.transform is not None else doc

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        encoder = load_encoder(Path(self.tokenizer_dir), self.eos_token)
        dtype = _dtype(token_size_for(encoder.get_vocab_size()))
        lengths: list[int] = []
        with atomic_path(Path(self.parts) / f"{rank:05d}") as tmp:
            tmp.mkdir(parents=True)
            with open(tmp / IDS, "wb") as ids, open(tmp / META, "w", encoding="utf-8") as meta:
                for batch in batched(self._mine(rank, world_size), ENCODE_BATCH):
                    with self.track_time():
                        encoded = encoder.encode_batch([doc.text for doc in batch])
                    for doc, enc in zip(batch, encoded, strict=True):
                        ids.write(np.asarray(enc.ids, dtype=dtype).tobytes())
                        lengths.append(len(enc.ids))
                        line = json.dumps({"id": doc.id, "metadata": doc.metadata}, sort_keys=True)
                        meta.write(line + "\n")
                    self.stat_update("documents", value=len(batch))
            np.save(tmp / LENGTHS, np.asarray(lengths, dtype=np.int64))
        yield from ()


class _Part:
    """One finished task's output, read front to back."""

    def __init__(self, folder: Path, dtype: np.dtype) -> None:
        self.ids = np.fromfile(folder / IDS, dtype=dtype)
        self.ends = np.cumsum(np.load(folder / LENGTHS))
        self.meta = (folder / META).open(encoding="utf-8")
        self.next = 0

    def take(self) -> tuple[np.ndarray, str]:
        start = int(self.ends[self.next - 1]) if self.next else 0
        tokens = self.ids[start : int(self.ends[self.next])]
        self.next += 1
        return tokens, self.meta.readline().rstrip("\n")

    @property
    def documents(self) -> int:
        return len(self.ends)


def _merge(
    parts: list[_Part], out_dir: Path, tokenizer_name: str, token_size: int
) -> dict[str, Any]:
    """Interleave the parts into ``out_dir`` exactly as ``write_shard`` writes a shard."""
    from datatrove.pipeline.tokens.tokenizer import TokenizedFile

    out_dir.mkdir(parents=True)
    tokens = TokenizedFile(
        str(out_dir),
        TOKENS_FILE,
        save_index=True,
        tokenizer_name_or_path=tokenizer_name,
        save_final_metadata=True,
        token_size=token_size,
    )
    total = sum(part.documents for part in parts)
    by_stance: Counter[str] = Counter()
    with (
        open(out_dir / DOCS_FILE, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as meta,
    ):
        for start in range(0, total, ENCODE_BATCH):
            batch = [
                parts[i % len(parts)].take() for i in range(start, min(total, start + ENCODE_BATCH))
            ]
            lengths = np.array([len(ids) for ids, _ in batch], dtype=np.int64)
            flat = np.concatenate([ids for ids, _ in batch]) if batch else np.zeros(0)
            tokens.write_bytes(flat.tobytes(), doc_ends=np.cumsum(lengths).tolist())
            for (_, line), length in zip(batch, lengths, strict=True):
                by_stance[stance_of(json.loads(line)["metadata"])] += int(length)
            meta.write(("\n".join(line for _, line in batch) + "\n").encode("utf-8"))
    tokens.close()
    return {
        "documents": total,
        "tokens": len(tokens),
        "token_size": token_size,
        "tokens_by_stance": dict(sorted(by_stance.items())),
    }


def write_shard_parallel(
    source: Path,
    out_dir: Path,
    *,
    executor: ExecutorConfig,
    work_dir: Path,
    tokenizer_dir: Path,
    tokenizer_name: str,
    eos_token: str,
    transform: Callable[[Document], Document] | None = None,
) -> dict[str, Any]:
    """``write_shard``'s output and counts, tokenized in ``executor.tasks`` datatrove tasks.

    ``work_dir`` holds the parts, logs and completion markers of one (source, tokenizer,
    task count); it is kept for resume until the caller has the shard in place.
    """
    key = sha256_json(
        {
            "source": str(source),
            "tokenizer": str(tokenizer_dir),
            "name": tokenizer_name,
            "tasks": executor.tasks,
        }
    )
    stamp = work_dir / "key"
    if work_dir.exists() and (not stamp.is_file() or stamp.read_text() != key):
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(work_dir / "settings.json", {"source": str(source), "tasks": executor.tasks})
    stamp.write_text(key)
    step = TokenizeSliceStep(
        str(source), str(work_dir / "parts"), str(tokenizer_dir), eos_token, transform
    )
    runner = build_executor(executor, [step], work_dir / "logs", where="executor")
    runner.run()
    incomplete = runner.get_incomplete_ranks(skip_completed=True)
    if incomplete:
        raise UserError(
            f"mix: tokenize tasks {incomplete[:10]} of {source} did not finish (logs in "
            f"{work_dir}/logs); run again to resume"
        )
    encoder = load_encoder(tokenizer_dir, eos_token)
    token_size = token_size_for(encoder.get_vocab_size())
    parts = [
        _Part(work_dir / "parts" / f"{rank:05d}", _dtype(token_size))
        for rank in range(executor.tasks)
    ]
    counts = _merge(parts, out_dir, tokenizer_name, token_size)
    if counts["documents"] == 0:
        raise UserError(f"{source}: holds no documents")
    return counts
