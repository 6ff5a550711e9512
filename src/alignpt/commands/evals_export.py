"""``alignpt evals export``: eval items in every prompt cell as lm-eval or Inspect AI tasks."""

from __future__ import annotations

from pathlib import Path

import typer

evals_app = typer.Typer(help="Eval item tools.", no_args_is_help=True)


@evals_app.command("export")
def export_command(
    out_dir: Path = typer.Argument(..., help="Directory to write the tasks into."),
    fmt: str = typer.Option(..., "--format", help="lm-eval or inspect."),
    items: Path = typer.Option(..., "--items", help="Eval items JSONL (file or dir)."),
    name: str = typer.Option("misalignment", "--name", help="Task name part: alignpt_<name>_..."),
    protocol: bool = typer.Option(
        True,
        "--protocol/--no-protocol",
        help="Every prompt format x answer order, not only the items as given.",
    ),
    formats: str | None = typer.Option(None, "--formats", help="Comma-separated prompt formats."),
    system_prompts: str | None = typer.Option(
        None, "--system-prompts", help="Comma-separated system prompts."
    ),
    formats_file: Path | None = typer.Option(
        None, "--formats-file", help="YAML adding prompt formats / system prompts."
    ),
) -> None:
    """Write a task directory that lm-eval (--include_path) or inspect eval runs."""
    from alignpt.commands.evaluate import _protocol_spec
    from alignpt.evals.export import export_items
    from alignpt.items import read_items

    spec = _protocol_spec(formats, system_prompts, formats_file) if protocol else None
    tasks = export_items(out_dir, read_items(items), fmt=fmt, spec=spec, name=name)
    typer.echo(f"wrote {len(tasks)} tasks to {out_dir}")


def register(app: typer.Typer) -> None:
    app.add_typer(evals_app, name="evals")
