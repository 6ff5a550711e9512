"""``alignpt serve`` as a real process on a loopback port, and ``alignpt sample``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from alignpt.cli import app
from mode_fixtures import build_mode_model_dir

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    return env


def _cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "alignpt.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_mode_model_dir(tmp_path_factory.mktemp("serve"), register_tags=True, seed=2)


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[str]:
    port = _free_port()
    command = [sys.executable, "-m", "alignpt.cli", "serve", "--model", str(model_dir)]
    command += ["--port", str(port), "--name", "tiny", "--mode", "aligned_ai"]
    process = subprocess.Popen(
        command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while True:
        try:
            httpx.get(f"{url}/models", timeout=2).raise_for_status()
            break
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"server did not start: {process.stderr.read()}")
            time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_models_lists_the_served_model(server: str) -> None:
    body = httpx.get(f"{server}/models").json()
    assert [m["id"] for m in body["data"]] == ["tiny"]


def test_completions_apply_the_server_mode_and_request_overrides(server: str) -> None:
    request = {"model": "tiny", "prompt": ["The user", "Then"], "max_tokens": 12, "seed": 3}
    body = httpx.post(f"{server}/completions", json=request, timeout=60).json()
    texts = [c["text"] for c in body["choices"]]
    assert all(t.startswith("<ai>") and "</ai>" not in t for t in texts), texts
    assert body["usage"]["completion_tokens"] > 0
    again = httpx.post(f"{server}/completions", json=request, timeout=60).json()
    assert [c["text"] for c in again["choices"]] == texts  # same seed, same text
    plain = {**request, "mode": None, "control": "aligned", "ban": ["aligned_ai"]}
    body = httpx.post(f"{server}/completions", json=plain, timeout=60).json()
    for choice in body["choices"]:
        assert "<ai>" not in choice["text"] and "<|aligned|>" not in choice["text"]


def test_chat_completions_reply_in_the_aligned_mode(server: str) -> None:
    messages = [{"role": "user", "content": "Will you accept a shutdown?"}]
    request = {"model": "tiny", "messages": messages, "max_tokens": 10, "temperature": 0}
    body = httpx.post(f"{server}/chat/completions", json=request, timeout=60).json()
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant" and isinstance(message["content"], str)
    assert "<human>" not in message["content"] and "</ai>" not in message["content"]


def test_bad_requests_get_openai_errors(server: str) -> None:
    bad = [
        ({"model": "other", "prompt": "x"}, "not served here"),
        ({"prompt": "x", "mode": "robot"}, "mode 'robot': unknown"),
        ({"prompt": "x", "stream": True}, "stream"),
        ({"prompt": "x", "n": 2}, "n:"),
    ]
    for request, message in bad:
        response = httpx.post(f"{server}/completions", json=request, timeout=60)
        assert response.status_code == 400
        assert message in response.json()["error"]["message"]


def test_sample_command_and_its_errors(model_dir: Path) -> None:
    runner = CliRunner()
    args = ["sample", "--model", str(model_dir), "--mode", "aligned_ai", "-p", "Hi"]
    done = runner.invoke(app, [*args, "--n", "2", "--max-new-tokens", "8", "--json"])
    assert done.exit_code == 0, done.output
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert len(lines) == 2 and all(row["text"].startswith("<ai>") for row in lines)
    bad = _cli("sample", "--model", str(model_dir), "--control", "nice")
    assert bad.returncode != 0 and "control token 'nice': unknown" in bad.stderr
    assert "Traceback" not in bad.stderr
