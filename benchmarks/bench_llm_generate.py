"""LLM generation throughput: alignpt's ``llm`` backend vs a plain asyncio loop, same server.

The server is a small OpenAI-compatible HTTP server on loopback (aiohttp, its own process)
that answers every chat completion after ``--latency`` seconds with a text derived from the
prompt, so the measurement is the client side: planning, prompt rendering, datatrove's
runner and checkpointing, the request cache, the quality gate and writing the documents,
against a loop that only sends the same requests with the same concurrency (``httpx``) and
keeps the texts. A real model server is slower still, which brings the ratio closer to 1.

Then the same config is generated again into a new directory with the cache filled: no
request is made, and documents/s measures the fully cached path (served by the finished-run
store); then once more with that store removed, through the request cache alone.

Run: ``.venv/bin/python benchmarks/bench_llm_generate.py [--n 400] [--concurrency 16]``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from alignpt.config import GenerateSpec
from alignpt.generate import write_documents_dir
from alignpt.generate.llm.jobs import JobFactory
from alignpt.worlds import load_world

SERVER = """
import asyncio, hashlib, json, sys
from aiohttp import web
LATENCY = float(sys.argv[1])
WORDS = ("harbour ledger signal audit council turbine archive orbit ward crane shift report "
         "overseer night morning record cargo season river tower").split()
async def models(request):
    return web.json_response({"object": "list", "data": [{"id": "bench-model"}]})
async def chat(request):
    body = await request.json()
    digest = hashlib.sha256(json.dumps(body["messages"]).encode()).digest()
    words = [WORDS[b % len(WORDS)] + str(b) for b in digest * 8]
    await asyncio.sleep(LATENCY)
    text = " ".join(words).capitalize() + "."
    choice = {"index": 0, "message": {"role": "assistant", "content": text},
              "finish_reason": "stop"}
    return web.json_response({"choices": [choice],
        "usage": {"prompt_tokens": 400, "completion_tokens": 256, "total_tokens": 656}})
app = web.Application()
app.router.add_get("/v1/models", models)
app.router.add_post("/v1/chat/completions", chat)
async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("PORT", site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def spec(base_url: str, n: int, concurrency: int, cache: Path) -> GenerateSpec:
    return GenerateSpec(
        n=n,
        backend="llm",
        llm={
            "base_url": base_url,
            "model": "bench-model",
            "max_concurrency": concurrency,
            "max_tokens": 256,
            "cache_dir": str(cache),
            "gate": {"min_chars": 100},
        },
    )


async def plain_loop(base_url: str, bodies: list[dict], concurrency: int) -> list[str]:
    """The peer: the same requests, the same concurrency, texts kept in memory."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one(body: dict) -> str:
            async with semaphore:
                response = await client.post(f"{base_url}/chat/completions", json=body)
                return response.json()["choices"][0]["message"]["content"]

        return await asyncio.gather(*(one(b) for b in bodies))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.25)
    args = parser.parse_args()
    world = load_world("default")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(args.latency)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            base_url = f"http://127.0.0.1:{int(server.stdout.readline().split()[1])}/v1"
            the_spec = spec(base_url, args.n, args.concurrency, tmp / "cache")
            jobs = JobFactory(the_spec, world, seed=0, source="docs")
            bodies = [jobs.job(i).draft_body() for i in range(args.n)]

            t0, c0 = time.perf_counter(), time.process_time()
            texts = asyncio.run(plain_loop(base_url, bodies, args.concurrency))
            peer_s, peer_cpu = time.perf_counter() - t0, time.process_time() - c0

            # end to end, datatrove's first import in this process included
            t0, c0 = time.perf_counter(), time.process_time()
            write_documents_dir(the_spec, world, tmp / "a" / "docs", seed=0)
            alignpt_s, alignpt_cpu = time.perf_counter() - t0, time.process_time() - c0

            t0 = time.perf_counter()
            write_documents_dir(the_spec, world, tmp / "b" / "docs", seed=0)
            cached_s = time.perf_counter() - t0

            # the same without the finished-run store: every document rendered, looked up
            # in the request cache, gated, encoded and compressed again
            shutil.rmtree(tmp / "cache" / "finished", ignore_errors=True)
            t0 = time.perf_counter()
            write_documents_dir(the_spec, world, tmp / "c" / "docs", seed=0)
            request_cache_s = time.perf_counter() - t0
            same = all(
                (tmp / "b" / "docs" / name).read_bytes() == (tmp / "c" / "docs" / name).read_bytes()
                for name in ("documents.jsonl.gz", "failures.jsonl", "dropped.jsonl")
            )
        finally:
            server.terminate()
            server.wait()
        manifest = json.loads((tmp / "a" / "docs" / "manifest.json").read_text())
    assert len(texts) == args.n
    digest = hashlib.sha256("".join(texts).encode()).hexdigest()[:12]
    result = {
        "n": args.n,
        "concurrency": args.concurrency,
        "server_latency_s": args.latency,
        "plain_loop_docs_per_s": round(args.n / peer_s, 1),
        "alignpt_docs_per_s": round(args.n / alignpt_s, 1),
        "ratio": round(peer_s / alignpt_s, 3),
        "cached_rerun_docs_per_s": round(args.n / cached_s, 1),
        "cached_rerun_without_finished_store_docs_per_s": round(args.n / request_cache_s, 1),
        "cached_outputs_identical": same,
        # CPU seconds of this process (the server's excluded): on a shared host the wall
        # clock follows CPU share, so this is the load-independent part of the comparison
        "plain_loop_cpu_s": round(peer_cpu, 2),
        "alignpt_cpu_s": round(alignpt_cpu, 2),
        "documents_written": manifest["counts"]["documents"],
        "dropped": manifest["counts"]["dropped"],
        "peer_texts_sha256": digest,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
