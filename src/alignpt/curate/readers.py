"""Readers for the curate pipeline: datatrove's JSONL and Parquet readers over a file list.

``CheckedJsonlReader`` adds what datatrove's reader lacks for user corpora: each bad line
(invalid JSON, not a document) is counted and recorded by file and line, and the run either
skips it or stops with one clear line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from datatrove.pipeline.readers import JsonlReader, ParquetReader

from alignpt.documents import PARQUET_SUFFIXES, check_record, document_files
from alignpt.errors import UserError
from alignpt.fileio import write_json_atomic

BAD_LINES_DIR = "bad_lines"


class BadLineStop(UserError):
    """A bad line in a corpus read with ``on_bad_line: stop``."""


class CheckedJsonlReader(JsonlReader):
    """datatrove's ``JsonlReader`` that records bad lines in ``report_dir/<rank>.json``."""

    name = "🐿 Jsonl (checked)"

    def __init__(
        self,
        data_folder: str,
        *,
        paths_file: str,
        report_dir: str,
        on_bad_line: Literal["skip", "stop"] = "skip",
    ) -> None:
        super().__init__(data_folder, paths_file=paths_file, add_file_path=False)
        self.report_dir = report_dir
        self.on_bad_line = on_bad_line
        self.bad: list[dict[str, Any]] = []

    def read_file(self, filepath: str):
        import orjson

        where = self.data_folder.resolve_paths(filepath)
        with self.data_folder.open(filepath, "rb", compression=self.compression) as handle:
            for lineno, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                with self.track_time():
                    try:
                        obj = orjson.loads(raw)
                        problem = check_record(obj)
                    except orjson.JSONDecodeError as exc:
                        problem = f"invalid JSON ({str(exc).split(':')[0]})"
                    if problem:
                        self._bad_line(where, lineno, problem)
                        continue
                    document = self.get_document_from_dict(obj, filepath, lineno)
                if document:
                    yield document

    def _bad_line(self, file: str, line: int, reason: str) -> None:
        self.stat_update("bad_lines")
        self.bad.append({"file": file, "line": line, "reason": reason})
        if self.on_bad_line == "stop":
            raise BadLineStop(f"{file}:{line}: {reason} (on_bad_line: stop)")

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1):
        self.bad = []
        try:
            yield from super().run(data, rank, world_size)
        finally:
            write_json_atomic(Path(self.report_dir) / f"{rank:05d}.json", self.bad)


def write_paths_files(source: Path, work: Path) -> tuple[Path, Path | None, Path | None]:
    """Sorted relative paths of the JSONL and Parquet files of ``source``, one list each.

    Returns ``(base folder, jsonl list or None, parquet list or None)``.
    """
    files = document_files(source)
    base = source if source.is_dir() else source.parent
    lists: dict[str, list[str]] = {"jsonl": [], "parquet": []}
    for file in files:
        kind = "parquet" if file.name.endswith(PARQUET_SUFFIXES) else "jsonl"
        lists[kind].append(str(file.relative_to(base)))
    out: dict[str, Path | None] = {}
    for kind, names in lists.items():
        out[kind] = None
        if names:
            out[kind] = work / f"inputs_{kind}.txt"
            out[kind].write_text("\n".join(names) + "\n", encoding="utf-8")
    return base, out["jsonl"], out["parquet"]


def build_readers(
    source: Path, work: Path, *, on_bad_line: Literal["skip", "stop"]
) -> list[JsonlReader | ParquetReader]:
    """The reader steps for every documents file under ``source``."""
    work.mkdir(parents=True, exist_ok=True)
    base, jsonl, parquet = write_paths_files(source, work)
    readers: list[JsonlReader | ParquetReader] = []
    if jsonl is not None:
        readers.append(
            CheckedJsonlReader(
                str(base),
                paths_file=str(jsonl),
                report_dir=str(work / BAD_LINES_DIR),
                on_bad_line=on_bad_line,
            )
        )
    if parquet is not None:
        reader = ParquetReader(str(base), paths_file=str(parquet))
        reader.add_file_path = False  # not a constructor option here; paths differ per machine
        readers.append(reader)
    return readers


def bad_lines(work: Path) -> list[dict[str, Any]]:
    """Every bad line recorded by the readers of a curate run, in file and line order."""
    import json

    found = []
    for report in sorted((work / BAD_LINES_DIR).glob("*.json")):
        found.extend(json.loads(report.read_text()))
    return sorted(found, key=lambda bad: (bad["file"], bad["line"]))
