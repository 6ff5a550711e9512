"""``alignpt generate``: documents and eval items from a world."""

from __future__ import annotations

from pathlib import Path

import typer

from alignpt.commands.options import parse_options
from alignpt.config import GenerateSpec, check_safe_name
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
) -> None:
    """Generate documents with the offline procedural backend."""
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
    }
    try:
        check_safe_name(source, "--source")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    spec = parse_options(GenerateSpec, options)
    the_world = load_world(world)
    check_output_dir(out)
    write_documents_dir(spec, the_world, out, seed=seed, source=source, force=force, progress=True)
    counts = (read_manifest(out) or {}).get("counts", {})
    typer.echo(f"{out}: {counts.get('documents', n)} documents (seed {seed})")


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
