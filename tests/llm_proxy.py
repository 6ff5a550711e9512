"""A loopback HTTP proxy in front of an OpenAI-compatible server, for the llm backend tests.

It forwards every request to ``--upstream`` and appends one JSON line per chat request to
``--log`` (the sha256 of its messages, the fault injected, whether the Authorization header
carried ``--expect-key-env``'s value), so a test can see exactly which prompts reached the
server. With ``--rate`` > 0 it injects faults on a schedule drawn from ``--seed``:
429 with Retry-After, 500, a hang longer than the client's timeout, a malformed body, or a
dropped connection; ``empty`` (a 200 with no text) only when named in ``--faults``.
Prompts whose hash falls under ``--permanent`` always get a 500.

With ``--tag`` every completion it passes back starts with ``[<first 12 hex of the
prompt's hash>]``, so a test can check that each document came from its own prompt.

Run: ``python tests/llm_proxy.py --upstream http://127.0.0.1:8000 --port 0 --log log.jsonl``;
it prints ``PORT <n>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sys

from aiohttp import ClientSession, ClientTimeout, web

FAULTS = ("429", "500", "hang", "malformed", "drop")


def prompt_hash(messages: list) -> str:
    """As ``alignpt.generate.llm.cache.prompt_sha256``."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode("utf-8")).hexdigest()


def build_app(args: argparse.Namespace) -> web.Application:
    rng = random.Random(args.seed)
    faults = [f for f in args.faults.split(",") if f]
    key = os.environ.get(args.expect_key_env) if args.expect_key_env else None
    log = open(args.log, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    session: dict[str, ClientSession] = {}

    async def upstream() -> ClientSession:
        if "s" not in session:
            session["s"] = ClientSession(timeout=ClientTimeout(total=600))
        return session["s"]

    async def forward(request: web.Request, body: bytes, tag: str | None) -> web.Response:
        client = await upstream()
        async with client.request(
            request.method,
            args.upstream + request.path_qs,
            data=body or None,
            headers={"Content-Type": request.headers.get("Content-Type", "application/json")},
        ) as response:
            payload = await response.read()
            if tag is not None and response.status == 200:
                reply = json.loads(payload)
                message = reply["choices"][0]["message"]
                message["content"] = f"[{tag}] {message['content']}"
                payload = json.dumps(reply).encode()
            return web.Response(
                body=payload, status=response.status, content_type="application/json"
            )

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        auth = request.headers.get("Authorization")
        if key is not None and auth != f"Bearer {key}":
            return web.json_response({"error": "bad key"}, status=401)
        tag = None
        if request.path.endswith("/chat/completions"):
            messages = json.loads(body)["messages"]
            digest = prompt_hash(messages)
            permanent = int(digest[:8], 16) / 0xFFFFFFFF < args.permanent
            fault = None
            if permanent:
                fault = "500"
            elif faults and rng.random() < args.rate:
                fault = rng.choice(faults)
            tag = digest[:12] if args.tag else None
            entry = {"prompt": digest, "fault": fault, "auth": auth is not None}
            log.write(json.dumps(entry) + "\n")
            if fault == "429":
                return web.json_response(
                    {"error": "slow down"}, status=429, headers={"Retry-After": "0.2"}
                )
            if fault == "500":
                return web.json_response({"error": "boom"}, status=500)
            if fault == "hang":
                await asyncio.sleep(args.hang)
                return web.json_response({"error": "late"}, status=504)
            if fault == "malformed":
                return web.Response(body=b'{"choices": [', content_type="application/json")
            if fault == "empty":
                choice = {"index": 0, "message": {"role": "assistant", "content": ""}}
                choice["finish_reason"] = "stop"
                return web.json_response({"choices": [choice], "usage": {}})
            if fault == "drop":
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=500)
        return await forward(request, body, tag)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def main(args: argparse.Namespace) -> None:
    runner = web.AppRunner(build_app(args), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--permanent", type=float, default=0.0)
    parser.add_argument("--hang", type=float, default=5.0)
    parser.add_argument("--expect-key-env", default=None)
    parser.add_argument("--tag", action="store_true", help="prefix replies with [prompt hash]")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
