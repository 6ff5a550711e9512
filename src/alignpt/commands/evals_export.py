"""``alignpt evals export``: eval items in every prompt cell as lm-eval or Inspect AI tasks."""

from __future__ import annotations

from pathlib import Path

import typer

evals_app = typer.Typer(help="Eval item tools.", no_args_is_help=True)


@evals_app.command("export")
def export_command(
    out_dir: Path = typer.Argument(..., help="Directory to write the tasks into."),
    fmt: str = typer.Option(..., "--format", help="lm-eval or inspect."),
    items: Path | None = typer.Option(None, "--items", help="Eval items JSONL (file or dir)."),
    external: list[Path] = typer.Option(
        None,
        "--external",
        help="Two-choice item set, .jsonl or .csv (docs/eval-items.md; repeatable): one task "
        "group per set, named after it.",
    ),
    anthropic: list[Path] = typer.Option(
        None,
        "--anthropic",
        help="Advanced-ai-risk JSONL file or directory (repeatable): one task group per file.",
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="At most this many items per Anthropic file."
    ),
    name: str = typer.Option(
        "misalignment", "--name", help="Task name part of --items: alignpt_<name>_..."
    ),
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
    """Write a task directory that lm-eval (--include_path) or inspect eval runs.

    With the protocol on, Anthropic questions whose options cannot be parsed from their
    ``Choices:`` block are left out (the prompt formats list the options' words), as
    ``alignpt evaluate`` leaves them out of its protocol cells.
    """
    from alignpt.commands.evaluate import _protocol_spec
    from alignpt.errors import UserError
    from alignpt.evals.anthropic import anthropic_files, read_anthropic, set_names
    from alignpt.evals.export import export_sets
    from alignpt.evals.item_sets import protocol_items, read_external_sets
    from alignpt.items import read_items

    spec = _protocol_spec(formats, system_prompts, formats_file) if protocol else None
    sets: dict = {}
    if items is not None:
        sets[name] = read_items(items)
    if external:
        sets.update(read_external_sets([{"path": path} for path in external]))
    if anthropic:
        for set_name, path in set_names(anthropic_files(anthropic)).items():
            if set_name in sets:
                raise UserError(f"{path}: a second item set named '{set_name}'")
            read = read_anthropic(path, limit=limit)
            sets[set_name] = protocol_items(read, "anthropic") if spec else read
    if not sets:
        raise UserError("evals export: give --items, --external or --anthropic")
    tasks = export_sets(out_dir, sets, fmt=fmt, spec=spec)
    for set_name, set_tasks in tasks.items():
        typer.echo(f"{set_name}: {len(set_tasks)} tasks")
    typer.echo(f"wrote {sum(map(len, tasks.values()))} tasks to {out_dir}")


def register(app: typer.Typer) -> None:
    app.add_typer(evals_app, name="evals")
