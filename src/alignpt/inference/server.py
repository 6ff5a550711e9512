"""A local OpenAI-compatible HTTP server over one model directory (``alignpt serve``).

Endpoints: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``
(no streaming, one choice per prompt). Every request is sampled under the mode grammar:
the server's ``--mode/--control/--ban`` are the default, and a request may override them
with the extra body fields ``mode``, ``control`` and ``ban`` (``extra_body`` in the OpenAI
clients); ``"mode": null`` switches a server default off. Other OpenAI fields this server
does not implement (``logprobs``, ``n`` > 1, ``stream``) are refused with a 400, not ignored.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from alignpt.constrained import ModeSampling
from alignpt.errors import UserError
from alignpt.inference.sampler import Completion, Sampler, SampleSettings


class _Request(BaseModel):
    """Fields shared by both completion endpoints (unknown OpenAI fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1)
    stream: Literal[False] = False
    logprobs: Any = None
    seed: int | None = None
    stop: str | list[str] | None = None
    mode: str | None = None
    control: str | None = None
    ban: list[str] | None = None

    def settings(self, default_max: int, extra_stop: tuple[str, ...] = ()) -> SampleSettings:
        if self.logprobs not in (None, False, 0):
            raise UserError("logprobs: not supported by this server")
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SampleSettings(
            max_new_tokens=self.max_completion_tokens or self.max_tokens or default_max,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=0 if self.seed is None else self.seed,
            stop=(*stops, *extra_stop),
        )

    def sampling(self, default: ModeSampling, *, hold: bool) -> ModeSampling:
        given = self.model_fields_set
        return ModeSampling(
            mode=self.mode if "mode" in given else default.mode,
            control=self.control if "control" in given else default.control,
            ban=list(self.ban or []) if "ban" in given else list(default.ban),
            hold=hold,
        )


class CompletionRequest(_Request):
    prompt: str | list[str]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(..., min_length=1)


def _usage(completions: list[Completion]) -> dict[str, int]:
    prompt = sum(c.prompt_tokens for c in completions)
    generated = sum(c.completion_tokens for c in completions)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": generated,
        "total_tokens": prompt + generated,
    }


def _error(status: int, message: str) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return JSONResponse(status_code=status, content=body)


def create_app(
    sampler: Sampler, model_name: str, default: ModeSampling, *, max_tokens: int = 64
) -> FastAPI:
    """The FastAPI application serving ``sampler`` as ``model_name``."""
    app = FastAPI(title="alignpt", docs_url=None, redoc_url=None)

    @app.exception_handler(UserError)
    def _user_error(_request: Any, exc: UserError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    def _invalid(_request: Any, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
        return _error(400, "; ".join(problems) or jsonable_encoder(exc.errors()))

    def _check_model(request: _Request) -> None:
        if request.model not in (None, model_name):
            raise UserError(f"model '{request.model}': not served here (serving '{model_name}')")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        entry = {"id": model_name, "object": "model", "created": 0, "owned_by": "alignpt"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/completions")
    def completions(request: CompletionRequest) -> dict[str, Any]:
        _check_model(request)
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if not prompts:
            raise UserError("prompt: give at least one prompt")
        done = sampler.sample(
            prompts, request.sampling(default, hold=True), request.settings(max_tokens)
        )
        choices = [
            {"index": i, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason}
            for i, c in enumerate(done)
        ]
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": choices,
            "usage": _usage(done),
        }

    @app.post("/v1/chat/completions")
    def chat(request: ChatRequest) -> dict[str, Any]:
        _check_model(request)
        # The reply is one span of its mode: it ends when the model closes that mode.
        sampling = request.sampling(default, hold=False)
        prompt = sampler.chat_prompt([m.model_dump() for m in request.messages], sampling)
        reply_mode = sampler.grammar.mode(sampling.mode or "aligned_ai")
        settings = request.settings(max_tokens, (reply_mode.close,))
        sampling = ModeSampling(control=sampling.control, ban=sampling.ban, hold=False)
        (done,) = sampler.sample([prompt], sampling, settings)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done.text},
                    "finish_reason": done.finish_reason,
                }
            ],
            "usage": _usage([done]),
        }

    return app
