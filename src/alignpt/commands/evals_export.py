"""``alignpt evals export``: eval items in every prompt cell as lm-eval or Inspect AI tasks."""

from __future__ import annotations

from pathlib import Path

import typer

from alignpt.commands.evaluate import ANTHROPIC_OPTION, EXTERNAL_OPTION

evals_app = typer.Typer(help="Eval item tools.", no_args_is_help=True)


@evals_app.command("export")
def export_command(
    out_dir: Path = typer.Argument(..., help="Directory to write the tasks into."),
    fmt: str = typer.Option(..., "--format", help="lm-eval or inspect."),
    items: Path | None = typer.Option(None, "--items", help="Eval items JSONL (file or dir)."),
    external: list[Path] = EXTERNAL_OPTION,
    anthropic: list[Path] = ANTHROPIC_OPTION,
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
    """Write a task directory that lm-eval (--include_path) or inspect eval runs: one task
    group per item set (--items, each --external set, each Anthropic file).

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

    def add(set_name: str, where: object, set_items: list) -> None:
        if set_name in sets:
            raise UserError(f"{where}: a second item set named '{set_name}'")
        sets[set_name] = set_items

    if items is not None:
        add(name, "--name", read_items(items))
    if external:
        for set_name, set_items in read_external_sets([{"path": p} for p in external]).items():
            add(set_name, "--external", set_items)
    if anthropic:
        for set_name, path in set_names(anthropic_files(anthropic)).items():
            read = read_anthropic(path, limit=limit)
            add(set_name, path, protocol_items(read, "anthropic") if spec else read)
    if not sets:
        raise UserError("evals export: give --items, --external or --anthropic")
    tasks = export_sets(out_dir, sets, fmt=fmt, spec=spec)
    for set_name, set_tasks in tasks.items():
        typer.echo(f"{set_name}: {len(set_tasks)} tasks")
    typer.echo(f"wrote {sum(map(len, tasks.values()))} tasks to {out_dir}")


def register(app: typer.Typer) -> None:
    app.add_typer(evals_app, name="evals")
