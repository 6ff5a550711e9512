"""The finished-run store: the output of every llm run that finished, by the run's identity.

A re-run of a config that already finished (the same config into a new directory, or a
pipeline re-executed from scratch) takes its output from here: no plan, no prompt rendered,
no request-cache lookup, no document encoded or compressed again. The store lives in the
request cache directory, beside the request shards::

    finished/<run key>/record.json          counts, prompt templates, each file's sha256
    finished/<run key>/documents.jsonl.gz   the run's files, byte for byte
    finished/<run key>/failures.jsonl
    finished/<run key>/dropped.jsonl

The **run key** hashes the run's config hash (generate spec with ``n``, the llm block's
model, sampling, seed, gate, critique and brainstorm settings, the world, the plan seed,
the source and every template text, see ``run_config``) together with what turns that
config into prompts and bytes without appearing in it: the source of the installed alignpt
package, the jinja2 and numpy versions, the zlib and Python versions. Any change to any of
them is another key, so a stored output is never served for a prompt that changed; that
run goes the normal way, through the request cache keyed by each rendered prompt.

Only a run with every planned document finished (kept or dropped by the gate, none
failed) is stored: a re-run of a run with failures must retry them, so it goes the normal
way, sends only the failed documents' requests and is stored once it finishes. A partial
entry (a run killed while storing) is never visible: an entry's directory is written under
a temporary name and renamed into place, and each file's sha256 is checked before serving.

Files are hard-linked where the file system allows (no second copy on disk, and linking is
O(1) however large the output); the alignpt writers replace files by renaming, never in
place, and the sha256 check refuses an entry whose bytes changed anyway.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import shutil
import zlib
from pathlib import Path
from typing import Any

from alignpt.fileio import atomic_path, sha256_file, sha256_json

STORE_DIR = "finished"
RECORD = "record.json"
FORMAT = 1
# package files that can change what a config renders or how its output is written
_SOURCE_SUFFIXES = (".py", ".txt", ".yaml", ".json")


@functools.cache
def code_fingerprint() -> str:
    """sha256 of the installed alignpt package's source and data files (once per process).

    The whole package rather than a list of modules: a list would go stale the day a
    module that shapes a prompt or a document is added. ~10 ms for ~1.5 MB of source.
    """
    root = Path(__file__).resolve().parents[2]  # .../alignpt
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in _SOURCE_SUFFIXES):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _library_versions() -> dict[str, str]:
    import jinja2  # renders the prompts
    import numpy  # the gate's MinHash

    return {
        "jinja2": jinja2.__version__,
        "numpy": numpy.__version__,
        "zlib": zlib.ZLIB_RUNTIME_VERSION,  # the gzip bytes of documents.jsonl.gz
        "python": platform.python_version(),
    }


def run_key(config_hash: str) -> str:
    """The finished store's key of a run whose ``run_config`` hashes to ``config_hash``."""
    return sha256_json(
        {
            "format": FORMAT,
            "config_hash": config_hash,
            "code": code_fingerprint(),
            "libraries": _library_versions(),
        }
    )


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:  # another file system, or links not supported
        shutil.copyfile(src, dest)


class FinishedStore:
    """Finished llm runs under ``cache_dir/finished``, one directory per run key."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.root = Path(cache_dir) / STORE_DIR

    def entry(self, key: str) -> Path:
        return self.root / key

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The record of run ``key`` if it is stored whole and unchanged, else None."""
        entry = self.entry(key)
        try:
            record = json.loads((entry / RECORD).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("key") != key:
            return None
        files = record.get("files")
        if not isinstance(files, dict) or not files:
            return None
        for name, digest in files.items():
            path = entry / name
            try:
                if sha256_file(path) != digest:
                    return None
            except OSError:
                return None
        return record

    def serve(self, record: dict[str, Any], dest: Path) -> list[Path]:
        """Place the files of a looked-up ``record`` in directory ``dest``; their paths."""
        entry = self.entry(record["key"])
        out = []
        for name in sorted(record["files"]):
            _link_or_copy(entry / name, dest / name)
            out.append(dest / name)
        return out

    def store(self, key: str, out_dir: Path, files: list[str], summary: dict[str, Any]) -> None:
        """Keep the finished output in ``out_dir`` (``files``, and ``summary``) as run ``key``.

        Best effort: a store that cannot be written (read-only cache, full disk) costs the
        next re-run its fast path, never this run its output.
        """
        entry = self.entry(key)
        with contextlib.suppress(OSError):
            self.root.mkdir(parents=True, exist_ok=True)
            with atomic_path(entry) as tmp:
                tmp.mkdir()
                digests = {}
                for name in files:
                    _link_or_copy(out_dir / name, tmp / name)
                    digests[name] = sha256_file(tmp / name)
                record = {"key": key, "format": FORMAT, "files": digests, **summary}
                (tmp / RECORD).write_text(json.dumps(record, sort_keys=True) + "\n")
