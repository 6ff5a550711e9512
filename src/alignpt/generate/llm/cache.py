"""The request cache: completed requests keyed by sha256(model, messages, sampling, seed).

Why not datatrove's ``RequestCache``: that one is a replay log for resuming one task. It
is keyed by document id (a result could be served to a different prompt under the same
id), its chunks are deleted as they complete and the whole file when the task finishes, so
a second run of the same config, or a run into another directory, would pay again. This
cache is keyed by the request content only, so a result can never be served for a prompt
other than the one that produced it, and it outlives runs.

Each datatrove task writes its own SQLite shard (``rank-00003.sqlite``), so tasks never
contend for a write lock and the directory works on a shared file system; reads look in
every shard present when the store is opened. A row is committed before its document is
considered done, so a SIGKILL loses at most the requests in flight.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY,
    prompt_sha256 TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    minhash BLOB,
    gate TEXT
)
"""
COLUMNS = "key, text, finish_reason, prompt_tokens, completion_tokens"
FEATURE_COLUMNS = (("minhash", "BLOB"), ("gate", "TEXT"))
LOOKUP_CHUNK = 500  # keys per SELECT ... IN (...): under SQLite's variable limit everywhere


@dataclass(frozen=True)
class Completion:
    """One successful completion (and the gate's MinHash signature of its text, if stored)."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    minhash: bytes | None = None
    gate: str | None = None  # the gate's other stored features (see ``gate.gate_features``)


def request_body(
    model: str, messages: list[dict[str, str]], sampling: dict[str, Any]
) -> dict[str, Any]:
    """The JSON body of a chat completion request (sampling includes the seed)."""
    return {"model": model, "messages": messages, **sampling}


def request_key(body: dict[str, Any]) -> str:
    """sha256 of the canonical request body: model, messages, sampling parameters, seed."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def prompt_sha256(messages: list[dict[str, str]]) -> str:
    """sha256 of the messages alone (what a server's request log can be matched on)."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode("utf-8")).hexdigest()


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    else:
        conn = sqlite3.connect(path, timeout=60)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed row survives a kill
        conn.execute(SCHEMA)
        present = _columns(conn)
        for name, kind in FEATURE_COLUMNS:  # a shard written before the gate's were stored
            if name not in present:
                conn.execute(f"ALTER TABLE requests ADD COLUMN {name} {kind}")
        conn.commit()
    return conn


def _columns(conn: sqlite3.Connection) -> set[str]:
    return {row[1] for row in conn.execute("PRAGMA table_info(requests)")}


def _query(conn: sqlite3.Connection, sql: str, args: tuple = ()) -> list[tuple]:
    """Rows of ``sql``; none from a shard whose writer has not created its table yet."""
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise


class RequestStore:
    """Lookups over every shard in ``directory``; writes to this task's shard.

    Without a ``rank`` the store only reads, and a missing directory is an empty cache.
    """

    def __init__(self, directory: str | Path, *, rank: int | None = None) -> None:
        self.directory = Path(directory)
        self._writer: sqlite3.Connection | None = None
        own = None
        if rank is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            own = self.directory / f"rank-{rank:05d}.sqlite"
            self._writer = _connect(own, readonly=False)
        self._readers = [self._writer] if self._writer is not None else []
        for path in sorted(self.directory.glob("rank-*.sqlite")):
            if path != own:
                self._readers.append(_connect(path, readonly=True))

    def get(self, key: str) -> Completion | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        """The cached completions of ``keys`` (missing keys absent), one query per 500 keys."""
        found: dict[str, Completion] = {}
        for conn in self._readers:
            missing = [k for k in dict.fromkeys(keys) if k not in found]
            if not missing:
                break
            present = _columns(conn)
            columns = ", ".join([COLUMNS, *(n for n, _ in FEATURE_COLUMNS if n in present)])
            for start in range(0, len(missing), LOOKUP_CHUNK):
                chunk = missing[start : start + LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT {columns} FROM requests WHERE key IN ({marks})"
                for key, *values in _query(conn, sql, tuple(chunk)):
                    found[key] = Completion(*values)
        return found

    def put(self, key: str, prompt_hash: str, completion: Completion) -> None:
        assert self._writer is not None, "opened read-only"
        self._writer.execute(
            "INSERT OR IGNORE INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                prompt_hash,
                completion.text,
                completion.finish_reason,
                completion.prompt_tokens,
                completion.completion_tokens,
                completion.minhash,
                completion.gate,
            ),
        )
        self._writer.commit()

    def prompt_hashes(self) -> set[str]:
        """Every cached prompt's hash (used to check that no finished request is repeated)."""
        hashes: set[str] = set()
        for conn in self._readers:
            hashes.update(row[0] for row in _query(conn, "SELECT prompt_sha256 FROM requests"))
        return hashes

    def close(self) -> None:
        for conn in self._readers:
            conn.close()
        self._readers = []
        self._writer = None
