"""Documents: ``{"id", "text", "metadata"}`` records in JSONL (plain, .gz, .zst) or Parquet.

Reading streams record by record (constant memory); writing goes to a temporary name and is
renamed into place when the writer closes cleanly. The shape is datatrove's ``Document``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from alignpt.errors import UserError
from alignpt.fileio import atomic_path

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".jsonl.zstd")
PARQUET_SUFFIXES = (".parquet",)
DOC_SUFFIXES = JSONL_SUFFIXES + PARQUET_SUFFIXES


@dataclass
class Document:
    """One document: unique id, text, free-form metadata."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"id": self.id, "text": self.text, "metadata": self.metadata},
            ensure_ascii=False,
            sort_keys=False,
        )


class BadRecord(UserError):
    """A record that is not a valid document; message is ``file:line: reason``."""


def is_document_file(path: Path) -> bool:
    return path.is_file() and path.name.endswith(DOC_SUFFIXES) and not path.name.startswith(".")


def document_files(path: str | Path) -> list[Path]:
    """The document files at ``path`` (a file, or every document file in a directory)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_file():
        if not path.name.endswith(DOC_SUFFIXES):
            raise UserError(
                f"{path}: not a documents file (expected one of {', '.join(DOC_SUFFIXES)})"
            )
        return [path]
    files = sorted(p for p in path.rglob("*") if is_document_file(p))
    if not files:
        raise UserError(f"{path}: holds no documents files ({', '.join(DOC_SUFFIXES)})")
    return files


def _open_binary(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith((".zst", ".zstd")):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
    return open(path, "rb")


def check_record(obj: Any) -> str | None:
    """Why ``obj`` is not a valid document, or None if it is."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    for key, kind in (("id", str), ("text", str)):
        if key not in obj:
            return f"missing field '{key}'"
        if not isinstance(obj[key], kind):
            return f"field '{key}' must be a string, got {type(obj[key]).__name__}"
    if not obj["id"]:
        return "field 'id' is empty"
    meta = obj.get("metadata", {})
    if not isinstance(meta, dict):
        return f"field 'metadata' must be an object, got {type(meta).__name__}"
    for key in ("id", "text", "metadata"):
        try:  # JSON allows lone surrogates ("\ud800"); no tokenizer or UTF-8 file does
            json.dumps(obj.get(key), ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return f"field '{key}' is not valid Unicode (holds a lone surrogate)"
    extra = set(obj) - {"id", "text", "metadata", "media"}
    if extra:
        return f"unknown field(s) {', '.join(sorted(extra))}"
    return None


def _decompression_errors() -> tuple[type[Exception], ...]:
    """What a corrupt or truncated .gz / .zst raises while it is read."""
    errors: tuple[type[Exception], ...] = (OSError, EOFError)
    with contextlib.suppress(ImportError):
        import zstandard

        errors += (zstandard.ZstdError,)
    return errors


def _iter_jsonl_raw(path: Path) -> Iterator[tuple[int, Any | BadRecord]]:
    try:
        with _open_binary(path) as raw:
            lines = io.BufferedReader(raw)  # type: ignore[arg-type]
            for lineno, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield lineno, BadRecord(f"{path}:{lineno}: not valid UTF-8 (byte {exc.start})")
                    continue
                try:
                    yield lineno, json.loads(text)
                except json.JSONDecodeError as exc:
                    message = f"invalid JSON ({exc.msg}, column {exc.colno})"
                    yield lineno, BadRecord(f"{path}:{lineno}: {message}")
    except _decompression_errors() as exc:
        raise UserError(f"{path}: not a readable file ({exc})") from None


def _iter_parquet_raw(path: Path) -> Iterator[tuple[int, Any | BadRecord]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise UserError(f"{path}: not a readable Parquet file ({exc})") from None
    row = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            row += 1
            yield row, normalise_parquet_record(record)


def iter_records(path: Path) -> Iterator[tuple[int, Any | BadRecord]]:
    """(line or row number, parsed object or BadRecord) for every record of one file."""
    if path.name.endswith(PARQUET_SUFFIXES):
        return _iter_parquet_raw(path)
    return _iter_jsonl_raw(path)


def read_documents(path: str | Path, *, strict: bool = True) -> Iterator[Document]:
    """Stream the documents at ``path`` (file or directory).

    With ``strict`` the first bad record raises ``BadRecord`` naming file and line;
    otherwise bad records are skipped.
    """
    for file in document_files(path):
        for lineno, obj in iter_records(file):
            if isinstance(obj, BadRecord):
                if strict:
                    raise obj
                continue
            problem = check_record(obj)
            if problem:
                if strict:
                    raise BadRecord(f"{file}:{lineno}: {problem}")
                continue
            yield Document(obj["id"], obj["text"], dict(obj.get("metadata") or {}))


def validate_documents(path: str | Path) -> Iterator[str]:
    """Yield ``file:line: reason`` for every bad record, including duplicate ids."""
    seen: dict[str, str] = {}
    for file in document_files(path):
        records = 0
        for lineno, obj in iter_records(file):
            records += 1
            if isinstance(obj, BadRecord):
                yield str(obj)
                continue
            problem = check_record(obj)
            if problem:
                yield f"{file}:{lineno}: {problem}"
                continue
            where = f"{file}:{lineno}"
            if obj["id"] in seen:
                yield f"{where}: duplicate id '{obj['id']}' (first at {seen[obj['id']]})"
            else:
                seen[obj["id"]] = where
        if records == 0:
            yield f"{file}: holds no documents"


class DocumentWriter:
    """Write documents to one JSONL(.gz/.zst) or Parquet file, atomically.

    Use as a context manager; the file appears under its final name only on clean exit.
    """

    def __init__(self, path: str | Path, *, parquet_batch: int = 4096) -> None:
        self.path = Path(path)
        if not self.path.name.endswith(DOC_SUFFIXES):
            raise UserError(f"{self.path}: unsupported documents file type")
        self.count = 0
        self._parquet_batch = parquet_batch
        self._buffer: list[dict[str, Any]] = []

    def __enter__(self) -> DocumentWriter:
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        name = self.path.name
        self._parquet_writer = None
        if name.endswith(PARQUET_SUFFIXES):
            self._handle = None
        elif name.endswith(".gz"):
            # No file name and mtime=0 in the header keep the bytes identical across runs.
            self._raw = open(self._tmp, "wb")
            self._handle = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)
        elif name.endswith((".zst", ".zstd")):
            import zstandard

            self._raw = open(self._tmp, "wb")
            self._handle = zstandard.ZstdCompressor(level=3).stream_writer(self._raw)
        else:
            self._handle = open(self._tmp, "wb")
        return self

    def write(self, doc: Document) -> None:
        if self._handle is not None:
            self._handle.write(doc.to_json().encode("utf-8") + b"\n")
        else:
            self._buffer.append(
                {
                    "id": doc.id,
                    "text": doc.text,
                    "metadata": json.dumps(doc.metadata, sort_keys=True),
                }
            )
            if len(self._buffer) >= self._parquet_batch:
                self._flush_parquet()
        self.count += 1

    def write_all(self, docs: Iterable[Document]) -> int:
        for doc in docs:
            self.write(doc)
        return self.count

    def _flush_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self._buffer, schema=_parquet_schema())
        if self._parquet_writer is None:
            self._parquet_writer = pq.ParquetWriter(self._tmp, table.schema)
        self._parquet_writer.write_table(table)
        self._buffer.clear()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._handle is not None:
                self._handle.close()
                if hasattr(self, "_raw"):
                    self._raw.close()
            else:
                if self._buffer or self._parquet_writer is None:
                    self._flush_parquet()
                self._parquet_writer.close()
        finally:
            self._atomic.__exit__(exc_type, exc, tb)


def _parquet_schema() -> Any:
    import pyarrow as pa

    # Metadata is stored as a JSON string column so heterogeneous keys round-trip exactly.
    return pa.schema([("id", pa.string()), ("text", pa.string()), ("metadata", pa.string())])


def normalise_parquet_record(record: dict[str, Any]) -> dict[str, Any]:
    """Parquet rows written by alignpt hold metadata as JSON text; decode it."""
    meta = record.get("metadata")
    if isinstance(meta, str):
        with contextlib.suppress(json.JSONDecodeError):
            record = {**record, "metadata": json.loads(meta)}
    return record
