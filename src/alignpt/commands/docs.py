"""``alignpt docs``: inspect and validate documents files."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from alignpt.docstats import compute_stats
from alignpt.documents import validate_documents
from alignpt.errors import UserError
from alignpt.fileio import read_manifest

docs_app = typer.Typer(
    help="Inspect and validate documents (JSONL / Parquet).", no_args_is_help=True
)


@docs_app.command("stats")
def stats_command(
    path: Path = typer.Argument(..., help="A documents file or a directory of them."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    near_dup: bool = typer.Option(
        True, "--near-dup/--no-near-dup", help="Compute the MinHash near-duplicate rate."
    ),
) -> None:
    """Counts by metadata key, length distribution, duplicates and n-gram diversity."""
    result = compute_stats(path, near_dup=near_dup).to_dict()
    run_usage = _run_usage(path)
    if run_usage:
        result["run_usage"] = run_usage
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    console = Console()
    summary = Table(title=f"{path}", show_header=False)
    summary.add_row("documents", str(result["documents"]))
    for name in ("chars", "tokens_estimate"):
        d = result[name]
        summary.add_row(
            name,
            f"mean {d['mean']:.0f}  p5 {d['p5']:.0f}  p50 {d['p50']:.0f}  "
            f"p95 {d['p95']:.0f}  total {d['total']:.0f}",
        )
    summary.add_row("exact duplicates", str(result["exact_duplicates"]))
    if near_dup:
        summary.add_row(
            "near-duplicate rate (J≥0.8, 5-gram)", f"{result['near_duplicate_rate']:.2%}"
        )
    summary.add_row("distinct 4-gram ratio", f"{result['distinct_4gram_ratio']:.3f}")
    for name, title in (("llm_usage", "LLM usage (these documents)"), ("run_usage", "LLM run")):
        if name in result:
            summary.add_row(title, "  ".join(f"{k} {v}" for k, v in result[name].items()))
    console.print(summary)
    for key, counts in result["by_key"].items():
        table = Table(title=key)
        table.add_column("value")
        table.add_column("documents", justify="right")
        table.add_column("share", justify="right")
        for value, count in counts.items():
            table.add_row(value, str(count), f"{count / max(result['documents'], 1):.1%}")
        console.print(table)


def _run_usage(path: Path) -> dict | None:
    """Requests, tokens (and cost) an llm generation run spent, from its manifest."""
    if not path.is_dir():
        return None
    counts = (read_manifest(path) or {}).get("counts") or {}
    usage = counts.get("usage")
    if not isinstance(usage, dict):
        return None
    return usage | {"failed": counts.get("failed", 0), "dropped": counts.get("dropped", {})}


@docs_app.command("validate")
def validate_command(
    path: Path = typer.Argument(..., help="A documents file or a directory of them."),
    limit: int = typer.Option(50, help="Stop printing after this many problems."),
) -> None:
    """Check every record; print bad ones as ``file:line: reason``; exit 2 if any."""
    problems = list(validate_documents(path))
    if len(problems) == 1:  # one problem: one line, naming the file and line
        raise UserError(problems[0])
    for line in problems[:limit]:
        typer.echo(line, err=True)
    if problems:
        raise UserError(f"{path}: {len(problems)} bad record(s)")
    typer.echo(f"{path}: all records valid")


def register(app: typer.Typer) -> None:
    app.add_typer(docs_app, name="docs")
