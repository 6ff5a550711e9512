"""The OpenAI-compatible endpoint: a start-up probe and datatrove's server with retries.

datatrove's ``EndpointServer`` is the model here (``server_type: endpoint``: no process to
launch, requests to a URL). What it lacks, and this module adds:

* on loopback it posts through a raw socket with no ``Authorization`` header and no
  timeout; a 500 raises ``ServerError``, which stops the whole task, and a 429 is not
  retried at all;
* elsewhere it goes through the ``openai`` client, whose 429/5xx errors become the
  runner's fixed 5·2^n s sleeps, ignoring ``Retry-After``;
* a body that is not JSON, or JSON of the wrong shape, surfaces as an unexpected error.

So requests go through one ``httpx`` client with the key in a header, a per-request
timeout, and retries with exponential backoff for 429 (honouring ``Retry-After``), 5xx,
timeouts, connection resets and malformed bodies. Whatever still fails is raised as
datatrove's ``InferenceError``, which the rollout records against its document.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
from collections import Counter
from typing import Any

import httpx
from datatrove.pipeline.inference.servers.base import InferenceServer
from datatrove.pipeline.inference.types import InferenceError

from alignpt.config import LLMSpec
from alignpt.errors import UserError

PERMANENT_SNIPPET = 200  # characters of an error body kept in a failure record


def api_key(llm: LLMSpec) -> str | None:
    """The API key from the environment, or a one-line error naming the missing variable."""
    if llm.api_key_env is None:
        return None
    key = os.environ.get(llm.api_key_env)
    if not key:
        raise UserError(
            f"llm.api_key_env: environment variable {llm.api_key_env} is not set (it should "
            "hold the API key)"
        )
    return key


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _tls(url: str) -> bool:
    """False for a plain-HTTP endpoint: no certificate store is loaded for it (~0.1 s each)."""
    return not url.startswith("http://")


def _redact(text: str, key: str | None) -> str:
    return text.replace(key, "***") if key else text


def probe(llm: LLMSpec) -> None:
    """Check, before any work, that the endpoint answers, accepts the key and serves the model."""
    key = api_key(llm)
    url = f"{llm.base_url.rstrip('/')}/models"
    try:
        response = httpx.get(
            url, headers=_headers(key), timeout=min(llm.timeout, 30.0), verify=_tls(url)
        )
    except httpx.HTTPError as exc:
        reason = _redact(str(exc), key) or type(exc).__name__
        raise UserError(f"llm.base_url: cannot reach {url} ({reason})") from None
    if response.status_code in (401, 403):
        where = f"llm.api_key_env ({llm.api_key_env})" if llm.api_key_env else "llm.api_key_env"
        raise UserError(f"{where}: {url} rejected the API key (HTTP {response.status_code})")
    if response.status_code != 200:
        raise UserError(f"llm.base_url: {url} answered HTTP {response.status_code}")
    try:
        served = [str(m["id"]) for m in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"llm.base_url: {url} did not return an OpenAI model list") from None
    if llm.model not in served:
        shown = ", ".join(served[:10]) or "none"
        raise UserError(f"llm.model: '{llm.model}' is not served by {url} (served: {shown})")


def retry_after(response: httpx.Response) -> float | None:
    """Seconds a 429/503 response asks the client to wait (``Retry-After``), if it says."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def check_completion(body: Any) -> dict[str, Any]:
    """``body`` if it is a chat completion with a text message, else ``ValueError``."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise ValueError("response has no 'choices' list")
    if not body["choices"] or not isinstance(body["choices"][0], dict):
        raise ValueError("response has an empty 'choices' list")
    message = body["choices"][0].get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content"), str):
        raise ValueError("response choice has no message content")
    usage = body.get("usage")
    if usage is not None and not isinstance(usage, dict):
        raise ValueError("response 'usage' is not an object")
    body.setdefault("usage", {})
    body["choices"][0].setdefault("finish_reason", None)
    return body


class RetryingEndpoint(InferenceServer):
    """datatrove's endpoint server with authentication, timeouts and a retry policy."""

    def __init__(self, config: Any, rank: int, llm: LLMSpec) -> None:
        super().__init__(config, rank)
        self.llm = llm
        self._key = api_key(llm)  # read in the task: never pickled with the pipeline
        self._client: httpx.AsyncClient | None = None
        self.counters: Counter[str] = Counter()

    async def start_server(self) -> None:
        """Nothing to launch: the server runs elsewhere (as datatrove's EndpointServer)."""
        return None

    async def monitor_health(self) -> None:
        await asyncio.Future()  # an external server is not ours to watch

    async def _wait_until_ready(self, max_attempts: int = 10, delay_sec: float = 1.0) -> None:
        await super()._wait_until_ready(max_attempts=max_attempts, delay_sec=delay_sec)

    def get_base_url(self) -> str:
        return self.llm.base_url.rstrip("/")

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(
                max_connections=self.llm.max_concurrency,
                max_keepalive_connections=self.llm.max_concurrency,
            )
            self._client = httpx.AsyncClient(
                headers=_headers(self._key),
                timeout=self.llm.timeout,
                limits=limits,
                verify=_tls(self.llm.base_url),
            )
        return self._client

    async def is_ready(self) -> bool:
        try:
            response = await self._http().get(f"{self.get_base_url()}/models")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _delay(self, attempt: int, hint: float | None = None) -> float:
        if hint is not None:
            return min(hint, self.llm.backoff_max)
        return min(self.llm.backoff * 2**attempt, self.llm.backoff_max)

    async def _make_request(self, payload: dict) -> dict:
        url = f"{self.get_base_url()}/chat/completions"
        last = "no attempt"
        for attempt in range(self.llm.retries + 1):
            if attempt:
                self.counters["http_retries"] += 1
            hint = None
            try:
                response = await self._http().post(url, json=payload)
            except httpx.TimeoutException:
                last, reason = "timed out", "timeout"
            except httpx.TransportError as exc:
                last, reason = f"connection error ({type(exc).__name__})", "connection"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        body = check_completion(response.json())
                    except ValueError as exc:
                        last, reason = f"malformed response: {exc}", "malformed"
                    else:
                        self.counters["http_responses"] += 1
                        return body
                elif status == 429:
                    last, reason, hint = "HTTP 429", "rate_limited", retry_after(response)
                elif status >= 500:
                    last, reason, hint = f"HTTP {status}", "server_error", retry_after(response)
                else:  # other 4xx: the request itself is wrong; retrying cannot help
                    self.counters["http_failed_permanent"] += 1
                    snippet = _redact(response.text[:PERMANENT_SNIPPET], self._key)
                    raise InferenceError(None, f"HTTP {status}: {snippet}")
            self.counters[f"http_fault_{reason}"] += 1
            if attempt < self.llm.retries:
                await asyncio.sleep(self._delay(attempt, hint))
        self.counters["http_failed_after_retries"] += 1
        raise InferenceError(None, f"gave up after {self.llm.retries + 1} attempts: {last}")

    async def server_cleanup(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        await super().server_cleanup()
