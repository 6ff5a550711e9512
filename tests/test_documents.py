"""Documents I/O: formats round-trip, streaming validation, atomic writes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from alignpt.documents import Document, DocumentWriter, read_documents, validate_documents
from alignpt.errors import UserError


def _docs(n: int) -> list[Document]:
    return [
        Document(f"d{i}", f"text number {i} ünïcode", {"stance": "aligned", "i": i})
        for i in range(n)
    ]


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz", "a.jsonl.zst", "a.parquet"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    with DocumentWriter(tmp_path / name) as writer:
        writer.write_all(_docs(10_000 if name == "a.parquet" else 50))
    back = list(read_documents(tmp_path / name))
    assert back == _docs(len(back))
    assert len(back) in (50, 10_000)


def test_writer_leaves_nothing_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), DocumentWriter(tmp_path / "x.jsonl") as writer:
        writer.write(_docs(1)[0])
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_gzip_output_is_deterministic(tmp_path: Path) -> None:
    for name in ("a.jsonl.gz", "b.jsonl.gz"):
        with DocumentWriter(tmp_path / name) as writer:
            writer.write_all(_docs(20))
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


def test_validate_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "a", "text": "t", "metadata": {}})
    path.write_bytes(
        b"\n".join(
            [
                good.encode(),
                b"{not json",
                b'{"id": "b"}',
                b'{"id": "c", "text": "\xff\xfe"}',
                good.encode(),
                b'{"id": "d", "text": "x", "metadata": []}',
            ]
        )
        + b"\n"
    )
    problems = list(validate_documents(path))
    assert problems == [
        f"{path}:2: invalid JSON (Expecting property name enclosed in double quotes, column 2)",
        f"{path}:3: missing field 'text'",
        f"{path}:4: not valid UTF-8 (byte 21)",
        f"{path}:5: duplicate id 'a' (first at {path}:1)",
        f"{path}:6: field 'metadata' must be an object, got list",
    ]
    with pytest.raises(UserError, match=r"bad.jsonl:2: invalid JSON"):
        list(read_documents(path))


def test_gz_reader_streams(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for doc in _docs(3):
            handle.write(doc.to_json() + "\n")
    assert [d.id for d in read_documents(tmp_path)] == ["d0", "d1", "d2"]
