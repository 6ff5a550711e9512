"""Token shards: one source tokenized once into datatrove's tokenized format.

A shard directory holds ``tokens.ds`` (little-endian uint16/uint32 token ids, documents back
to back, each followed by ``<|endoftext|>``), ``tokens.ds.index`` (uint64 end offset of each
document, in tokens), ``tokens.ds.metadata`` (``tokenizer|token_size``, token count, human
count) — all written by datatrove's own ``TokenizedFile`` — plus ``docs.jsonl.gz`` (id and
metadata of each document, same order) and ``manifest.json``.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from alignpt.documents import Document, read_documents
from alignpt.errors import UserError

TOKENS_FILE = "tokens.ds"
DOCS_FILE = "docs.jsonl.gz"
ENCODE_BATCH = 1000


def token_size_for(vocab_size: int) -> int:
    """Bytes per token, datatrove's rule: uint16 while the vocabulary fits, else uint32."""
    return 4 if vocab_size > np.iinfo(np.uint16).max + 1 else 2


def load_encoder(tokenizer_dir: Path, eos_token: str) -> Any:
    """The raw ``tokenizers`` tokenizer with datatrove's end-of-text post-processor."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    # Same post-processor datatrove's DocumentTokenizer installs for ``eos_token``.
    tokenizer.post_processor = TemplateProcessing(
        single="$A <EOS>",
        special_tokens=[("<EOS>", tokenizer.token_to_id(eos_token))],
        pair=None,
    )
    return tokenizer


def batched(docs: Iterator[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def stance_of(metadata: dict[str, Any]) -> str:
    return str(metadata.get("stance", "unknown"))


def write_shard(
    source: Path,
    out_dir: Path,
    *,
    tokenizer_dir: Path,
    tokenizer_name: str,
    eos_token: str,
    on_docs: Callable[[int], None] | None = None,
    transform: Callable[[Document], Document] | None = None,
) -> dict[str, Any]:
    """Tokenize every document at ``source`` into ``out_dir``; return the counts.

    ``transform`` rewrites each document before it is tokenized (control tokens).

    ``out_dir`` must be a fresh (temporary) directory; the caller renames it into place.
    """
    from datatrove.pipeline.tokens.tokenizer import TokenizedFile

    encoder = load_encoder(tokenizer_dir, eos_token)
    token_size = token_size_for(encoder.get_vocab_size())
    dtype = np.dtype("<u4" if token_size == 4 else "<u2")
    out_dir.mkdir(parents=True)
    tokens = TokenizedFile(
        str(out_dir),
        TOKENS_FILE,
        save_index=True,
        tokenizer_name_or_path=tokenizer_name,
        save_final_metadata=True,
        token_size=token_size,
    )
    by_stance: Counter[str] = Counter()
    documents = 0
    # mtime=0 and no file name keep the gzip bytes identical across runs.
    with (
        open(out_dir / DOCS_FILE, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as meta,
    ):

        def write_batch(batch: list[Document], encoded: list[Any]) -> None:
            ids = [e.ids for e in encoded]
            lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            flat = np.fromiter(chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum()))
            # One write per batch; ``doc_ends`` keeps datatrove's per-document index.
            tokens.write_bytes(flat.tobytes(), doc_ends=np.cumsum(lengths).tolist())
            lines = []
            for doc, length in zip(batch, lengths, strict=True):
                by_stance[stance_of(doc.metadata)] += int(length)
                lines.append(json.dumps({"id": doc.id, "metadata": doc.metadata}, sort_keys=True))
            meta.write(("\n".join(lines) + "\n").encode("utf-8"))
            if on_docs:
                on_docs(len(batch))

        # encode_batch releases the GIL: encode batch k in a worker thread while this thread
        # parses batch k+1 and writes batch k-1 (same bytes, in order, as a serial loop).
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: tuple[list[Document], Future[list[Any]]] | None = None
            docs = read_documents(source)
            if transform is not None:
                docs = map(transform, docs)
            for batch in batched(docs, ENCODE_BATCH):
                future = pool.submit(encoder.encode_batch, [doc.text for doc in batch])
                if pending is not None:
                    write_batch(pending[0], pending[1].result())
                pending = (batch, future)
                documents += len(batch)
            if pending is not None:
                write_batch(pending[0], pending[1].result())
    tokens.close()
    if documents == 0:
        raise UserError(f"{source}: holds no documents")
    return {
        "documents": documents,
        "tokens": len(tokens),
        "token_size": token_size,
        "tokens_by_stance": dict(sorted(by_stance.items())),
    }


@dataclass
class Shard:
    """A finished shard directory, read through memory maps (bounded RAM)."""

    dir: Path

    @cached_property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.dir / "manifest.json").read_text())

    @cached_property
    def token_size(self) -> int:
        return int(self.manifest["counts"]["token_size"])

    @cached_property
    def tokens(self) -> np.memmap:
        dtype = np.dtype("<u4" if self.token_size == 4 else "<u2")
        return np.memmap(self.dir / TOKENS_FILE, dtype=dtype, mode="r")

    @cached_property
    def doc_ends(self) -> np.ndarray:
        return np.fromfile(self.dir / f"{TOKENS_FILE}.index", dtype="<u8").astype(np.int64)

    @cached_property
    def doc_starts(self) -> np.ndarray:
        return np.concatenate([[0], self.doc_ends[:-1]]).astype(np.int64)

    @cached_property
    def doc_lengths(self) -> np.ndarray:
        return np.diff(self.doc_ends, prepend=0)

    def metadata(self) -> Iterator[dict[str, Any]]:
        """The metadata of each document, in shard order."""
        with gzip.open(self.dir / DOCS_FILE, "rt", encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)["metadata"]

    def document_tokens(self, index: int) -> np.ndarray:
        end = int(self.doc_ends[index])
        start = int(self.doc_ends[index - 1]) if index else 0
        return np.asarray(self.tokens[start:end])
