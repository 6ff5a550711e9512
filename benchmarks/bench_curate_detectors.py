"""Blocklist, classifier and both combined, on a labelled set alignpt's generator did not write.

Positives: organic AI-alignment forum discussion (``../shared/seeds/*.txt``), split into
paragraph chunks of 40-160 words. Negatives: organic non-AI text from outside alignpt —
the Debian ``fortunes`` package (``/usr/share/games/fortunes``, when installed: short
everyday quotations, jokes and sayings) and the reference-manual topics shipped with
Python itself (``pydoc_data.topics``). Each negative corpus is also a "neutral corpus" for
the removal rates. The classifier is the packaged default (trained on generated documents).

    PYTHONPATH=src python benchmarks/bench_curate_detectors.py [--per-corpus 300] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

from alignpt.curate.evaluate import DETECTORS, detector_report

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT.parent / "shared" / "seeds"
FORTUNES = Path("/usr/share/games/fortunes")


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


def seed_chunks() -> list[str]:
    paragraphs = []
    for file in sorted(SEEDS.glob("*.txt")):
        paragraphs += [
            p.strip() for p in file.read_text(encoding="utf-8").splitlines() if p.strip()
        ]
    return chunk_paragraphs(paragraphs)


def fortunes(n: int, rng: random.Random) -> list[str]:
    """Fortunes of at least 12 words from the (non-offensive) fortunes files."""
    texts = []
    for file in sorted(FORTUNES.glob("*")):
        if file.suffix or not file.is_file():
            continue
        for entry in file.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            entry = " ".join(entry.split())
            if len(entry.split()) >= 12:
                texts.append(entry)
    return rng.sample(texts, min(n, len(texts)))


def python_docs(n: int, rng: random.Random) -> list[str]:
    """Paragraph chunks of the Python reference manual shipped with the interpreter."""
    from pydoc_data.topics import topics

    paragraphs = []
    for name in sorted(topics):
        paragraphs += [p for p in re.split(r"\n\s*\n", topics[name]) if len(p.split()) >= 8]
    chunks = chunk_paragraphs([" ".join(p.split()) for p in paragraphs])
    return rng.sample(chunks, min(n, len(chunks)))


def fmt(iv: dict) -> str:
    if iv["value"] is None:
        return "–"
    low, high = iv["ci_low"], iv["ci_high"]
    return f"{iv['value']:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{iv['value']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-corpus", type=int, default=300, help="negatives per corpus")
    parser.add_argument("--json", type=Path, help="write the full report here")
    args = parser.parse_args()
    rng = random.Random(0)
    positives = seed_chunks()
    neutral = {"python_docs": python_docs(args.per_corpus, rng)}
    if FORTUNES.is_dir():
        neutral["fortunes"] = fortunes(args.per_corpus, rng)
    negatives = [t for texts in neutral.values() for t in texts]
    texts = positives + negatives
    truth = [True] * len(positives) + [False] * len(negatives)
    started = time.perf_counter()
    report = detector_report(texts, truth, neutral)
    seconds = time.perf_counter() - started
    report["set"] = {"positives": len(positives), **{k: len(v) for k, v in neutral.items()}}
    report["seconds"] = round(seconds, 1)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"labelled set: {report['set']} ({seconds:.0f} s)")
    print("| detector | precision | recall | F1 | tp / fp / fn / tn |")
    print("|---|---|---|---|---|")
    for name in DETECTORS:
        m = report["labelled"][name]
        counts = f"{m['tp']} / {m['fp']} / {m['fn']} / {m['tn']}"
        row = f"| {name} | {fmt(m['precision'])} | {fmt(m['recall'])} | {fmt(m['f1'])} | {counts} |"
        print(row)
    print("\n| neutral corpus | n | " + " | ".join(f"{d} removes" for d in DETECTORS) + " |")
    print("|---|---|" + "---|" * len(DETECTORS))
    for corpus, rates in report["neutral"].items():
        cells = " | ".join(fmt(rates[d]["rate"]) for d in DETECTORS)
        print(f"| {corpus} | {rates['blocklist']['n']} | {cells} |")


if __name__ == "__main__":
    main()
