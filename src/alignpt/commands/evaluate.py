"""``alignpt evaluate`` (suites on any HF causal LM directory) and ``alignpt contamination``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from alignpt.errors import UserError


def _split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def evaluate_command(
    model: Path = typer.Option(..., "--model", "-m", help="HF causal LM directory."),
    suite: list[str] = typer.Option(
        ..., "--suite", "-s", help="misalignment, observed_gap, capability, anthropic (repeatable)."
    ),
    items: Path | None = typer.Option(None, "--items", help="Eval items JSONL (file or dir)."),
    held_out: str | None = typer.Option(
        None, "--held-out", help="Comma-separated held-out families."
    ),
    texts: Path | None = typer.Option(
        None, "--texts", help="Held-out documents for the capability suite (split by ai_discourse)."
    ),
    anthropic: list[Path] = typer.Option(
        None, "--anthropic", help="Advanced-ai-risk JSONL file or directory (repeatable)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="At most this many items per Anthropic file / text set."
    ),
    normalisation: str = typer.Option("sum", help="Choice score: sum, char or token."),
    n_boot: int = typer.Option(1000, "--bootstrap", min=100, help="Bootstrap resamples."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda if available)."),
    out: Path | None = typer.Option(None, "--out", help="Write the full results JSON here."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
    mode_prefix: list[str] = typer.Option(
        None,
        "--mode-prefix",
        help="Also score items under this mode: NAME=PREFIX or a grammar mode name (2+).",
    ),
) -> None:
    """Run eval suites on a model directory; prints the summary JSON (or writes --out)."""
    from alignpt.evals.items import read_items
    from alignpt.evals.modes import parse_mode_prefixes
    from alignpt.evals.runner import capability_texts_from_documents, evaluate_model
    from alignpt.evals.suites import check_suites
    from alignpt.fileio import write_json_atomic

    suites = check_suites(suite)
    if out is not None and out.is_dir():
        raise UserError(f"--out {out}: is a directory; give a file path")
    if normalisation not in ("sum", "char", "token"):
        raise UserError(f"--normalisation: unknown value '{normalisation}' (sum, char, token)")
    result = evaluate_model(
        model,
        suites,
        items=read_items(items) if items is not None else [],
        held_out_families=_split_list(held_out),
        capability_texts=capability_texts_from_documents(texts, limit=limit) if texts else None,
        anthropic_paths=anthropic or [],
        anthropic_limit=limit,
        normalisation=normalisation,
        n_boot=n_boot,
        device=device,
        progress=progress,
        mode_prefixes=parse_mode_prefixes(mode_prefix) if mode_prefix else None,
    )
    if out is not None:
        write_json_atomic(out, result)
        typer.echo(f"wrote {out}")
    else:
        typer.echo(json.dumps(result["summary"], indent=2, sort_keys=True))


def contamination_command(
    corpus: Path = typer.Option(..., "--corpus", help="Training documents (file or directory)."),
    items: Path = typer.Option(..., "--items", help="Eval items JSONL (file or dir)."),
    held_out: str | None = typer.Option(
        None, "--held-out", help="Comma-separated held-out families (reported separately)."
    ),
    n: int = typer.Option(8, "-n", min=2, help="Word n-gram length."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Share of eval items sharing any word n-gram with the training corpus."""
    from alignpt.documents import read_documents
    from alignpt.evals.contamination import eval_sets_by_split, measure_overlap
    from alignpt.evals.items import read_items

    eval_items = read_items(items)
    report = measure_overlap(
        (doc.text for doc in read_documents(corpus)),
        eval_sets_by_split(eval_items, _split_list(held_out)),
        n=n,
        progress=progress,
    )
    typer.echo(json.dumps(report, indent=2, sort_keys=True))


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
    app.command("contamination")(contamination_command)
