"""A labelled set of organic text, none of it written by alignpt: train and held-out splits.

Positives (``ai_discourse: true``, stance unknown) are paragraph chunks of organic discussion
of AI alignment (a folder of ``.txt`` files, such as ``../shared/seeds/``). Negatives
(``ai_discourse: false``, ``stance: neutral``) come from text that ships with the machine:

- ``python_docs``: the reference-manual topics shipped with Python (``pydoc_data.topics``);
- ``stdlib_docstrings``: module, class and function docstrings of Python's standard library,
  read with ``ast`` from the source files (nothing is imported);
- ``licences``: the licence texts in ``/usr/share/common-licenses`` (Debian ``base-files``);
- ``fortunes``: the non-offensive Debian ``fortunes`` files (``/usr/share/games/fortunes``).

A source is cut into *units* (a seed file, a manual topic, a stdlib module, a licence, a
fortunes file) and whole units go to one split: in sorted order, every third unit starting
at the second is held out. No chunk of a held-out unit is ever trained on.
"""

from __future__ import annotations

import ast
import functools
import random
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alignpt.documents import Document, DocumentWriter
from alignpt.errors import UserError
from alignpt.fileio import sha256_file, write_json_atomic

Units = dict[str, list[str]]  # unit name -> its text chunks

FORTUNES = Path("/usr/share/games/fortunes")
LICENCES = Path("/usr/share/common-licenses")
MAN_PAGES = Path("/usr/share/man/man1")
SPLITS = ("train", "eval")
SET_FILE = "labelled-set.json"


def chunk_paragraphs(paragraphs: list[str], low: int = 40, high: int = 160) -> list[str]:
    """Consecutive paragraphs joined until at least ``low`` words; long ones cut at ``high``."""
    chunks, current = [], []
    for paragraph in paragraphs:
        words = paragraph.split()
        while len(words) > high:
            chunks.append(" ".join(words[:high]))
            words = words[high:]
        current += words
        if len(current) >= low:
            chunks.append(" ".join(current))
            current = []
    if len(current) >= low // 2:
        chunks.append(" ".join(current))
    return chunks


def _paragraphs(text: str, min_words: int = 1) -> list[str]:
    parts = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return [p for p in parts if len(p.split()) >= min_words]


def seed_units(folder: Path) -> Units:
    """One unit per ``.txt`` file; each non-empty line is a paragraph of the discussion."""
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise UserError(f"--seeds: {folder}: no .txt files of organic AI discussion")
    return {f.name: chunk_paragraphs(f.read_text("utf-8").splitlines()) for f in files}


def python_doc_units() -> Units:
    from pydoc_data.topics import topics

    units = {name: chunk_paragraphs(_paragraphs(topics[name], 8)) for name in sorted(topics)}
    return {name: chunks for name, chunks in units.items() if chunks}


def _docstrings(source: str) -> list[str]:
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    tree = ast.parse(source)
    found = (ast.get_docstring(node) for node in ast.walk(tree) if isinstance(node, nodes))
    return [doc for doc in found if doc]


@functools.lru_cache(maxsize=1)
def _stdlib_docstring_units() -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((name, tuple(chunks)) for name, chunks in _read_stdlib_docstrings().items())


def stdlib_docstring_units() -> Units:
    """Docstrings of the top-level standard-library modules (``Lib/*.py``), one unit each.

    Parsed once per process (seconds of ``ast`` work; the interpreter's files do not change).
    """
    return {name: list(chunks) for name, chunks in _stdlib_docstring_units()}


def _read_stdlib_docstrings() -> Units:
    stdlib = Path(ast.__file__).parent
    units: Units = {}
    for file in sorted(stdlib.glob("*.py")):
        if file.stem.startswith("_") or file.stem not in sys.stdlib_module_names:
            continue
        try:
            paragraphs = [p for d in _docstrings(file.read_text("utf-8")) for p in _paragraphs(d)]
        except (SyntaxError, UnicodeDecodeError):
            continue
        chunks = chunk_paragraphs(paragraphs)
        if chunks:
            units[file.stem] = chunks
    return units


def licence_units() -> Units:
    """The distinct licence texts (symlinked aliases read once)."""
    units: Units = {}
    seen: set[Path] = set()
    for file in sorted(LICENCES.glob("*")) if LICENCES.is_dir() else []:
        real = file.resolve()
        if real in seen or not real.is_file():
            continue
        seen.add(real)
        units[file.name] = chunk_paragraphs(_paragraphs(real.read_text("utf-8", "replace"), 8))
    return {name: chunks for name, chunks in units.items() if chunks}


def fortune_units() -> Units:
    """Fortunes of at least 12 words, one unit per fortunes file."""
    units: Units = {}
    for file in sorted(FORTUNES.glob("*")) if FORTUNES.is_dir() else []:
        if file.suffix or not file.is_file():
            continue
        entries = file.read_text("utf-8", "replace").split("\n%\n")
        texts = [" ".join(e.split()) for e in entries if len(e.split()) >= 12]
        if texts:
            units[file.name] = texts
    return units


_ROFF_ESCAPE = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)|\\\(..|\\[-,/&^|:]")


def man_page_text(roff: str) -> list[str]:
    """Paragraphs of a man page's roff source: macro lines break paragraphs, escapes go.

    A rough reading (no roff interpreter): enough for prose, not for tables.
    """
    paragraphs, current = [], []
    for line in roff.splitlines():
        if line.startswith((".", "'", '\\"')):
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        text = _ROFF_ESCAPE.sub(lambda m: "-" if m.group() == "\\-" else "", line).strip()
        if text:
            current.append(text)
    if current:
        paragraphs.append(" ".join(current))
    return [p for p in paragraphs if len(p.split()) >= 8]


def man_page_units(n_pages: int, seed: int = 0, folder: Path = MAN_PAGES) -> Units:
    """Section-1 man pages of this machine (``n_pages`` drawn by ``seed``), one unit each.

    Not a training source: it measures removal on a kind of text no head has seen. The
    Google Cloud SDK pages (``gcloud*``) are left out: thousands of near-identical command
    references, many about its AI products.
    """
    import gzip

    files = sorted(f for f in folder.glob("*.gz") if not f.name.startswith("gcloud"))
    files = files if folder.is_dir() else []
    units: Units = {}
    for file in random.Random(seed).sample(files, min(n_pages, len(files))):
        try:
            roff = gzip.decompress(file.read_bytes()).decode("utf-8", "replace")
        except (OSError, EOFError):
            continue
        chunks = chunk_paragraphs(man_page_text(roff))
        if chunks:
            units[file.name] = chunks[:1]
    return dict(sorted(units.items()))


NEGATIVE_SOURCES: dict[str, Callable[[], Units]] = {
    "python_docs": python_doc_units,
    "stdlib_docstrings": stdlib_docstring_units,
    "licences": licence_units,
    "fortunes": fortune_units,
}


def split_units(units: Units) -> dict[str, Units]:
    """Whole units to a split: in sorted order, every third unit from the second is held out."""
    out: dict[str, Units] = {"train": {}, "eval": {}}
    for index, name in enumerate(sorted(units)):
        out["eval" if index % 3 == 1 else "train"][name] = units[name]
    return out


def _sample(units: Units, cap: int | None, rng: random.Random) -> list[tuple[str, str]]:
    pairs = [(unit, text) for unit in sorted(units) for text in units[unit]]
    return pairs if cap is None or len(pairs) <= cap else sorted(rng.sample(pairs, cap))


def _documents(source: str, pairs: list[tuple[str, str]], label: dict[str, Any]) -> list[Document]:
    return [
        Document(
            id=f"{source}/{unit}/{index}",
            text=text,
            metadata={**label, "source": source, "unit": unit, "origin": "organic"},
        )
        for index, (unit, text) in enumerate(pairs)
    ]


def build_labelled_set(
    seeds: Path,
    out: Path,
    *,
    train_per_source: int = 250,
    eval_per_source: int = 150,
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``out/train.jsonl`` and ``out/eval.jsonl`` and a description; returns it."""
    rng = random.Random(seed)
    positive = {"ai_discourse": True, "stance": None}
    negative = {"ai_discourse": False, "stance": "neutral"}
    docs: dict[str, list[Document]] = {split: [] for split in SPLITS}
    described: dict[str, Any] = {"seed": seed, "held_out_rule": "sorted units, index % 3 == 1"}
    sources = {"seeds": (lambda: seed_units(seeds), positive, None)}
    sources |= {
        name: (collect, negative, (train_per_source, eval_per_source))
        for name, collect in NEGATIVE_SOURCES.items()
    }
    for name, (collect, label, caps) in sources.items():
        units = collect()
        if not units:
            described[name] = "not on this machine"
            continue
        entry: dict[str, Any] = {}
        for split, part in split_units(units).items():
            cap = None if caps is None else caps[SPLITS.index(split)]
            pairs = _sample(part, cap, rng)
            docs[split] += _documents(name, pairs, label)
            entry[split] = {"units": sorted(part), "chunks": len(pairs)}
        described[name] = entry
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with DocumentWriter(out / f"{split}.jsonl") as writer:
            writer.write_all(docs[split])
        described[f"{split}_sha256"] = sha256_file(out / f"{split}.jsonl")
        described[f"{split}_counts"] = dict(
            Counter("ai_discourse" if d.metadata["ai_discourse"] else "not" for d in docs[split])
        )
    described["python"] = sys.version.split()[0]
    write_json_atomic(out / SET_FILE, described)
    return described
