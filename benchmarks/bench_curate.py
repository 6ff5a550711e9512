"""Throughput of the curate pipeline against a bare datatrove reader → writer, 1 and 2 workers.

The same JSONL files (generated documents, 4 files) go through three pipelines on
``LocalPipelineExecutor`` with 4 tasks: bare (JsonlReader → JsonlWriter), blocklist
(checked reader → blocklist → decide → filter → writer) and full (checked reader →
blocklist → classifier → decide → filter → tag → writer; the packaged MiniLM classifier,
embedding cache cleared before each run). Every worker uses one torch thread (cpus // 2).
2-worker runs fork from a fork server that has torch imported (started before timing) and
each worker loads MiniLM, which is timed; the 1-worker run is in-process with its model
already loaded. Reported: documents/s
per worker, the full/bare and blocklist/bare ratios, and the 1 → 2 worker speed-up.

    PYTHONPATH=src python benchmarks/bench_curate.py [--docs 400]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from alignpt.config import CurateSpec, GenerateSpec
from alignpt.curate.embed import clear_cache, set_threads
from alignpt.curate.pipeline import preload_worker_imports, run_curate
from alignpt.documents import DocumentWriter, read_documents
from alignpt.executors import ExecutorConfig, build_executor
from alignpt.generate import write_documents_dir
from alignpt.worlds import load_world

TASKS = 4


def corpus(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    world = load_world("default")
    docs = []
    for name, stance, seed in (("n", "neutral", 1), ("m", "mixed", 2)):
        spec = GenerateSpec(n=n // 2, stance=stance)
        docs += list(read_documents(write_documents_dir(spec, world, folder / name, seed=seed)))
    web = folder / "web"
    web.mkdir()
    for index in range(TASKS):
        with DocumentWriter(web / f"part-{index}.jsonl") as writer:
            writer.write_all(docs[index::TASKS])
    return web


def bare(source: Path, out: Path, workers: int) -> None:
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    steps = [
        JsonlReader(str(source), add_file_path=False),
        JsonlWriter(str(out / "docs"), output_filename="${rank}.jsonl", compression=None),
    ]
    build_executor(ExecutorConfig(tasks=TASKS, workers=workers), steps, out / "logs").run()


def curate(source: Path, out: Path, workers: int, fields: dict) -> None:
    clear_cache()
    spec = CurateSpec.model_validate({**fields, "executor": {"tasks": TASKS, "workers": workers}})
    run_curate(spec, source, out)


PIPELINES = {
    "bare": None,
    "blocklist": {
        "detect": "blocklist",
        "classifier": {"enabled": False},
        "actions": {"filter": {}},
    },
    "full": {"actions": {"filter": {"drop": "misaligned"}, "tag": {"tokens": "document"}}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400)
    args = parser.parse_args()
    # the fork server every 2-worker run forks from imports torch once (as `alignpt curate`)
    preload_worker_imports(classifier=True)
    # one torch thread per worker in both runs (2 workers pin themselves to cpus // 2; on
    # 2 cores that is 1), so the speed-up measures workers, not torch's intra-op threads
    set_threads(max(1, (os.cpu_count() or 2) // 2))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = corpus(root, args.docs)
        n = sum(1 for _ in read_documents(source))
        warm = corpus(root / "small", 8)
        # untimed: imports and model load in this process, and the fork server's start
        curate(warm, root / "warm", 1, PIPELINES["full"])
        curate(warm, root / "warm2", 2, PIPELINES["full"])
        shutil.rmtree(root / "warm")
        rates: dict[tuple[str, int], float] = {}
        for workers in (1, 2):
            for name, fields in PIPELINES.items():
                out = root / f"{name}-{workers}"
                started = time.perf_counter()
                if fields is None:
                    bare(source, out, workers)
                else:
                    curate(source, out, workers, fields)
                seconds = time.perf_counter() - started
                rates[name, workers] = n / seconds / workers
                print(f"{name:9s} workers={workers}: {seconds:7.2f} s, {n / seconds:8.1f} docs/s")
    print(f"\n{n} documents, {TASKS} tasks")
    print(
        "| pipeline | docs/s per worker (1 worker) | docs/s per worker (2) | "
        "x of bare (1 worker) | 1 → 2 worker speed-up |"
    )
    print("|---|---|---|---|---|")
    for name in PIPELINES:
        one, two = rates[name, 1], rates[name, 2]
        ratio = one / rates["bare", 1]
        print(f"| {name} | {one:.1f} | {two:.1f} | {ratio:.4f} | {2 * two / one:.2f} |")


if __name__ == "__main__":
    main()
