"""``alignpt sample`` and ``alignpt serve``: sampling under the mode grammar."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from alignpt.errors import UserError

MODEL = typer.Option(..., "--model", "-m", help="HF causal LM directory.")
MODE = typer.Option(None, "--mode", help="Force this mode open and keep it open (e.g. aligned_ai).")
CONTROL = typer.Option(
    None,
    "--control",
    help="PHF conditioning: prefix this control token's label (e.g. aligned) and ban them all.",
)
BAN = typer.Option(
    None, "--ban", help="Never open this mode, or never emit this control label or string."
)
GRAMMAR = typer.Option(
    None,
    "--grammar",
    help="Mode grammar: 'default' or a YAML path (default: the model directory's "
    "mode_grammar.yaml, else the packaged default).",
)
DEVICE = typer.Option(None, "--device", help="cpu or cuda (default: cpu).")


def _sampling(mode: str | None, control: str | None, ban: list[str] | None):
    from alignpt.constrained import ModeSampling

    return ModeSampling(mode=mode, control=control, ban=list(ban or []))


def sample_command(
    model: Path = MODEL,
    prompt: list[str] = typer.Option(None, "--prompt", "-p", help="Prompt (repeatable)."),
    mode: str | None = MODE,
    control: str | None = CONTROL,
    ban: list[str] = BAN,
    grammar: str | None = GRAMMAR,
    n: int = typer.Option(1, "--n", min=1, help="Samples per prompt."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1),
    temperature: float = typer.Option(1.0, min=0.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    seed: int = typer.Option(0, help="Sampling seed (same seed, same samples)."),
    device: str | None = DEVICE,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per sample."),
) -> None:
    """Sample continuations, with the mode grammar enforced at every step."""
    from alignpt.inference.sampler import Sampler, SampleSettings

    sampler = Sampler.load(model, grammar, device)
    prompts = [p for p in (prompt or [""]) for _ in range(n)]
    settings = SampleSettings(max_new_tokens, temperature, top_p, seed)
    done = sampler.sample(prompts, _sampling(mode, control, ban), settings)
    for text, completion in zip(prompts, done, strict=True):
        if as_json:
            row = {"prompt": text, "text": completion.text, "finish": completion.finish_reason}
            typer.echo(json.dumps(row, ensure_ascii=False))
        else:
            typer.echo(f"{text}{completion.text}\n---")


def serve_command(
    model: Path = MODEL,
    mode: str | None = MODE,
    control: str | None = CONTROL,
    ban: list[str] = BAN,
    grammar: str | None = GRAMMAR,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    name: str | None = typer.Option(None, help="Model id clients use (default: directory name)."),
    max_tokens: int = typer.Option(64, "--max-tokens", min=1, help="Default max_tokens."),
    device: str | None = DEVICE,
) -> None:
    """Serve a model directory over an OpenAI-compatible HTTP API (/v1/...)."""
    import uvicorn

    from alignpt.inference.sampler import Sampler
    from alignpt.inference.server import create_app

    sampler = Sampler.load(model, grammar, device)
    default = _sampling(mode, control, ban)
    if default.mode is not None:
        sampler.grammar.mode(default.mode)
    if default.control is not None:
        sampler.grammar.control_token(default.control)
    model_name = name or model.resolve().name
    app = create_app(sampler, model_name, default, max_tokens=max_tokens)
    typer.echo(f"serving {model_name} at http://{host}:{port}/v1", err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    except OSError as exc:
        raise UserError(f"--port {port}: cannot listen on {host} ({exc.strerror})") from None


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_command)
    app.command("serve")(serve_command)
