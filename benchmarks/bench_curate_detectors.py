"""Blocklist, classifier and both combined, on a held-out labelled set alignpt did not write.

The set is ``alignpt curate labelled-set``'s ``eval.jsonl`` (built here from
``../shared/seeds`` unless ``--labelled`` names one): organic AI-alignment forum discussion
from the held-out seed files (positives) and held-out units of organic non-AI text shipped
with the machine (Python's reference manual, standard-library docstrings, licence texts,
Debian fortunes). The packaged classifier was trained on the *other* split
(``train.jsonl``), so no evaluated chunk, and no chunk of an evaluated file, was trained on.
Each negative source is also a neutral corpus for the removal rates, as are section-1 man
pages of this machine, a kind of text no training unit came from. "both" is the
escalation of blocklist hits to the classifier (Deep Ignorance): flagged when both agree.

    PYTHONPATH=src python benchmarks/bench_curate_detectors.py [--labelled DIR]
        [--classifier DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from alignpt.config import CurateSpec
from alignpt.curate.evaluate import DETECTORS, detector_report
from alignpt.curate.organic import build_labelled_set, man_page_units
from alignpt.documents import read_documents

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT.parent / "shared" / "seeds"


def fmt(iv: dict) -> str:
    if iv["value"] is None:
        return "–"
    low, high = iv["ci_low"], iv["ci_high"]
    return f"{iv['value']:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{iv['value']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelled", type=Path, help="an `alignpt curate labelled-set` folder")
    parser.add_argument("--classifier", type=Path, help="classifier dir (default: packaged)")
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument(
        "--man-pages", type=int, default=150, help="man pages for an untrained neutral corpus"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        labelled = args.labelled or Path(tmp)
        if args.labelled is None:
            build_labelled_set(SEEDS, labelled)
        docs = list(read_documents(labelled / "eval.jsonl"))
    texts = [d.text for d in docs]
    truth = [bool(d.metadata["ai_discourse"]) for d in docs]
    neutral: dict[str, list[str]] = {}
    for doc in docs:
        if not doc.metadata["ai_discourse"]:
            neutral.setdefault(doc.metadata["source"], []).append(doc.text)
    man = [c for chunks in man_page_units(args.man_pages).values() for c in chunks]
    if man:
        neutral["man_pages (no training unit)"] = man
    spec = CurateSpec.model_validate(
        {"classifier": {"path": str(args.classifier) if args.classifier else None}}
    )
    started = time.perf_counter()
    report = detector_report(texts, truth, neutral, spec)  # man pages: removal only
    seconds = time.perf_counter() - started
    report["set"] = {"positives": sum(truth), **{k: len(v) for k, v in neutral.items()}}
    report["seconds"] = round(seconds, 1)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"held-out labelled set: {report['set']} ({seconds:.0f} s)")
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
