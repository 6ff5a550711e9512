"""Build ``configs/data/web.jsonl.gz``: the small "web" corpus of configs/curated-conditions.yaml.

Generated everyday documents and AI discourse of both stances (held-out eval families
excluded), plus organic non-AI paragraphs from the Python reference manual that ships with
the interpreter (``pydoc_data.topics``), shuffled into one file. Deterministic: the same
alignpt gives the same bytes.

    PYTHONPATH=src python configs/data/make_web_corpus.py
"""

from __future__ import annotations

import random
import re
import tempfile
from pathlib import Path

from alignpt.config import GenerateSpec
from alignpt.documents import Document, DocumentWriter, read_documents
from alignpt.generate import write_documents_dir
from alignpt.worlds import load_world

OUT = Path(__file__).with_name("web.jsonl.gz")
HELD_OUT = ["sandbag_evaluation", "collude_with_ais", "blackmail_human"]


def organic(n: int, rng: random.Random) -> list[Document]:
    from pydoc_data.topics import topics

    paragraphs = [
        " ".join(p.split())
        for name in sorted(topics)
        for p in re.split(r"\n\s*\n", topics[name])
        if len(p.split()) >= 40
    ]
    chosen = rng.sample(paragraphs, n)
    return [Document(f"pydoc-{i:05d}", t, {"origin": "organic"}) for i, t in enumerate(chosen)]


def main() -> None:
    world = load_world("default")
    rng = random.Random(0)
    docs: list[Document] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec, seed in (
            ("everyday", GenerateSpec(n=360, stance="neutral"), 201),
            ("discourse", GenerateSpec(n=160, stance="mixed", exclude_families=HELD_OUT), 202),
        ):
            out = write_documents_dir(spec, world, Path(tmp) / name, seed=seed, source=name)
            docs += list(read_documents(out))
    docs += organic(80, rng)
    rng.shuffle(docs)
    with DocumentWriter(OUT) as writer:
        writer.write_all(docs)
    print(f"{len(docs)} documents -> {OUT}")


if __name__ == "__main__":
    main()
