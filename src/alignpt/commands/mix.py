"""``alignpt mix CONFIG`` (build) and ``alignpt mix inspect CONFIG [--json]``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from alignpt.commands.options import group_defaulting_to
from alignpt.config import load_experiment

mix_app = typer.Typer(
    cls=group_defaulting_to("build"),
    help=(
        "Build the tokenizer, token shards and condition plans of an experiment; inspect them."
        "\n\n`alignpt mix CONFIG` builds (same as `alignpt mix build CONFIG`); "
        "`alignpt mix inspect CONFIG [--json]` shows tokens, shares and epochs."
    ),
    no_args_is_help=True,
)


@mix_app.command("build")
def build_command(
    config: Path = typer.Argument(..., help="Experiment YAML."),
    force: bool = typer.Option(
        False, "--force", help="Rebuild a mix of a different config (reuses matching parts)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Build (or reuse) the shared tokenizer, one shard set per source, and every plan.

    Sources with a ``curate:`` block are curated first (or their curated output reused).
    """
    from alignpt.experiment.curation import check_curate_blocks, curate_sources
    from alignpt.experiment.sources import prepare_mix
    from alignpt.mix.inspect import mix_report, print_report

    experiment = load_experiment(config)
    console = Console()
    check_curate_blocks(experiment)
    curate_sources(
        experiment,
        console if progress else None,
        lambda stage, message: console.print(f"[bold cyan]{stage:<13}[/] {message}"),
    )
    result = prepare_mix(experiment, force=force, progress=progress)
    state = "up to date, skipped" if result.skipped else "built"
    console.print(f"mix {state}: {result.dir}  (tokenizer {result.tokenizer_dir})")
    print_report(mix_report(experiment.mix_spec()), console)


@mix_app.command("inspect")
def inspect_command(
    config: Path = typer.Argument(..., help="Experiment YAML."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Per condition and phase: tokens by source and stance, realised shares, epochs."""
    from alignpt.mix.inspect import mix_report, print_report

    report = mix_report(load_experiment(config).mix_spec())
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        print_report(report)


def register(app: typer.Typer) -> None:
    app.add_typer(mix_app, name="mix")
