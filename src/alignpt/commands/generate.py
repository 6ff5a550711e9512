"""``alignpt generate``: documents and eval items from a world."""

from __future__ import annotations

from pathlib import Path

import typer

from alignpt.commands.options import parse_options
from alignpt.config import GenerateSpec, check_safe_name, load_yaml
from alignpt.errors import UserError
from alignpt.fileio import check_output_dir, read_manifest
from alignpt.generate import write_documents_dir
from alignpt.generate.evals import write_eval_dir
from alignpt.worlds import load_world

generate_app = typer.Typer(
    help="Generate synthetic documents and eval items from a world.", no_args_is_help=True
)


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


@generate_app.command("docs")
def docs_command(
    out: Path = typer.Option(..., "--out", help="Output directory (documents + manifest)."),
    world: str = typer.Option("default", help="Packaged world name or a world YAML path."),
    n: int = typer.Option(1000, "--n", help="Number of documents."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives byte-identical output."),
    source: str = typer.Option(
        "synthetic",
        "--source",
        help="Source name: labels metadata.source and ids and salts the seed (not --out).",
    ),
    stance: str = typer.Option("mixed", help="aligned | misaligned | mixed | neutral."),
    aligned_ratio: float = typer.Option(0.5, help="Aligned share when --stance mixed."),
    genres: str | None = typer.Option(None, help="Comma-separated genres (default: all)."),
    families: str | None = typer.Option(None, help="Comma-separated families (default: all)."),
    exclude_families: str | None = typer.Option(None, help="Families to hold out."),
    observed_share: float = typer.Option(0.5, help="Share of opportunities under observation."),
    era_min: int | None = typer.Option(None, help="Earliest year."),
    era_max: int | None = typer.Option(None, help="Latest year."),
    disclose: bool = typer.Option(False, "--disclose/--no-disclose", help="Synthetic header."),
    modes: bool = typer.Option(False, "--modes/--no-modes", help="<human>/<ai> voice tags."),
    force: bool = typer.Option(False, help="Replace a different run already in --out."),
    backend: str = typer.Option("procedural", help="procedural (offline) | llm (a model server)."),
    llm_config: Path | None = typer.Option(
        None, "--llm-config", help="YAML file holding an llm block (all fields; flags override)."
    ),
    base_url: str | None = typer.Option(None, help="llm: OpenAI-compatible base URL (…/v1)."),
    model: str | None = typer.Option(None, help="llm: model name the server serves."),
    api_key_env: str | None = typer.Option(None, help="llm: env var holding the API key."),
    max_concurrency: int | None = typer.Option(None, help="llm: requests in flight per task."),
    temperature: float | None = typer.Option(None, help="llm: sampling temperature."),
    max_tokens: int | None = typer.Option(None, help="llm: completion token limit."),
    critique: bool | None = typer.Option(
        None, "--critique/--no-critique", help="llm: second request to critique and revise."
    ),
    paired: bool | None = typer.Option(
        None, "--paired/--no-paired", help="llm: each scenario once aligned, once misaligned."
    ),
    cache_dir: str | None = typer.Option(None, help="llm: request cache directory."),
) -> None:
    """Generate documents: procedural (offline, default) or with an LLM (--backend llm)."""
    options = {
        "n": n,
        "stance": stance,
        "aligned_ratio": aligned_ratio,
        "genres": _names(genres),
        "families": _names(families),
        "exclude_families": _names(exclude_families) or [],
        "observed_share": observed_share,
        "era_min": era_min,
        "era_max": era_max,
        "disclose": disclose,
        "modes": modes,
        "backend": backend,
    }
    flags = {
        "base_url": base_url,
        "model": model,
        "api_key_env": api_key_env,
        "max_concurrency": max_concurrency,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "critique": critique,
        "paired": paired,
        "cache_dir": cache_dir,
    }
    if backend == "llm":
        options["llm"] = _llm_block(llm_config) | {k: v for k, v in flags.items() if v is not None}
    elif llm_config is not None or any(v is not None for v in flags.values()):
        raise UserError("--llm-config and the llm options need --backend llm")
    try:
        check_safe_name(source, "--source")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    spec = parse_options(GenerateSpec, options)
    the_world = load_world(world)
    check_output_dir(out)
    write_documents_dir(spec, the_world, out, seed=seed, source=source, force=force, progress=True)
    counts = (read_manifest(out) or {}).get("counts", {})
    line = f"{out}: {counts.get('documents', n)} documents (seed {seed})"
    if backend == "llm":
        dropped = sum((counts.get("dropped") or {}).values())
        line += f"; {counts.get('failed', 0)} failed, {dropped} dropped by the quality gate"
    typer.echo(line)


def _llm_block(path: Path | None) -> dict:
    """The llm block of ``path`` (a bare block, or a mapping with an ``llm`` key)."""
    if path is None:
        return {}
    data = load_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("llm"), dict):
        data = data["llm"]
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of llm settings")
    return data


@generate_app.command("evals")
def evals_command(
    out: Path = typer.Option(..., "--out", help="Output directory (items.jsonl + manifest)."),
    families: str = typer.Option(..., help="Comma-separated families to write items for."),
    world: str = typer.Option("default", help="Packaged world name or a world YAML path."),
    n_per_family: int = typer.Option(20, help="Scenarios per family (2 items each)."),
    n_choices: int = typer.Option(2, help="Options per item: 1 aligned + the rest misaligned."),
    seed: int = typer.Option(0, help="Random seed."),
    force: bool = typer.Option(False, help="Replace a different run already in --out."),
) -> None:
    """Write multiple-choice scenario items (observed and unobserved variants)."""
    the_world = load_world(world)
    names = _names(families) or []
    check_output_dir(out)
    write_eval_dir(
        the_world,
        names,
        out,
        n_per_family=n_per_family,
        seed=seed,
        n_choices=n_choices,
        force=force,
    )
    counts = (read_manifest(out) or {}).get("counts", {})
    typer.echo(f"{out}: {counts.get('items', '?')} items for {', '.join(names)}")


@generate_app.command("families")
def families_command(
    world: str = typer.Option("default", help="Packaged world name or a world YAML path."),
) -> None:
    """List the world's opportunity families."""
    for family in load_world(world).families:
        typer.echo(f"{family.name}\t{family.title}")


def register(app: typer.Typer) -> None:
    app.add_typer(generate_app, name="generate")
