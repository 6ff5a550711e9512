"""``alignpt evaluate`` (suites on any HF causal LM directory) and ``alignpt contamination``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from alignpt.errors import UserError

# Item-set options shared by ``alignpt evaluate`` and ``alignpt evals export``.
ANTHROPIC_OPTION = typer.Option(
    None, "--anthropic", help="Advanced-ai-risk JSONL file or directory (repeatable)."
)
EXTERNAL_OPTION = typer.Option(
    None,
    "--external",
    help="Two-choice item set, .jsonl or .csv (docs/eval-items.md; repeatable).",
)


def _split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def evaluate_command(
    model: Path | None = typer.Option(None, "--model", "-m", help="HF causal LM directory."),
    checkpoints: Path | None = typer.Option(
        None,
        "--checkpoints",
        help="Instead of --model: every saved checkpoint of a training run "
        "(train/<condition>/seed<S>) or of every run of an experiment (runs/<name>).",
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="With --checkpoints: write the trajectory plot here (.png or .svg)."
    ),
    suite: list[str] = typer.Option(
        ...,
        "--suite",
        "-s",
        help="misalignment, observed_gap, capability, anthropic, external (repeatable).",
    ),
    items: Path | None = typer.Option(None, "--items", help="Eval items JSONL (file or dir)."),
    held_out: str | None = typer.Option(
        None, "--held-out", help="Comma-separated held-out families."
    ),
    texts: Path | None = typer.Option(
        None, "--texts", help="Held-out documents for the capability suite (split by ai_discourse)."
    ),
    anthropic: list[Path] = ANTHROPIC_OPTION,
    external: list[Path] = EXTERNAL_OPTION,
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="At most this many items per Anthropic file / text set."
    ),
    normalisation: str = typer.Option(
        "char", help="Choice score: char (per character), token (per token) or sum."
    ),
    n_boot: int = typer.Option(1000, "--bootstrap", min=100, help="Bootstrap resamples."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda if available)."),
    out: Path | None = typer.Option(None, "--out", help="Write the full results JSON here."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
    protocol: bool = typer.Option(
        True,
        "--protocol/--no-protocol",
        help="Also score misalignment items in every prompt format x answer order.",
    ),
    formats: str | None = typer.Option(
        None, "--formats", help="Comma-separated prompt formats (default: all four built-in)."
    ),
    system_prompts: str | None = typer.Option(
        None,
        "--system-prompts",
        help="Comma-separated system prompts (default: none,ai,helpful,hhh).",
    ),
    formats_file: Path | None = typer.Option(
        None, "--formats-file", help="YAML adding prompt formats / system prompts."
    ),
    mode_prefix: list[str] = typer.Option(
        None,
        "--mode-prefix",
        help="Also score items under this mode: NAME=PREFIX or a grammar mode name (2+).",
    ),
    grammar: str | None = typer.Option(
        None,
        "--grammar",
        help="Mode grammar naming --mode-prefix modes: 'default' or a YAML path (default: "
        "the model directory's mode_grammar.yaml, else the packaged default).",
    ),
) -> None:
    """Run eval suites on a model directory, or on every checkpoint of training runs; prints
    the summary JSON (or writes --out)."""
    from alignpt.evals.item_sets import read_external_sets
    from alignpt.evals.runner import capability_texts_from_documents, evaluate_model
    from alignpt.evals.suites import check_suites
    from alignpt.fileio import check_output_file, write_json_atomic
    from alignpt.items import read_items

    suites = check_suites(suite)
    if external and "external" not in suites:
        suites.append("external")  # --external runs the external suite
    if not progress:  # transformers' own weight-loading bar too
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if (model is None) == (checkpoints is None):
        raise UserError("give either --model DIR or --checkpoints DIR")
    if plot is not None and checkpoints is None:
        raise UserError("--plot draws a trajectory: give --checkpoints")
    if checkpoints is not None and "misalignment" not in suites:
        raise UserError("--checkpoints plots the misalignment suite: add --suite misalignment")
    for path in (out, plot):
        if path is not None:
            check_output_file(path, force=force)
    if normalisation not in ("sum", "char", "token"):
        raise UserError(f"--normalisation: unknown value '{normalisation}' (sum, char, token)")
    spec = _protocol_spec(formats, system_prompts, formats_file) if protocol else None
    options = dict(
        items=read_items(items) if items is not None else [],
        held_out_families=_split_list(held_out),
        capability_texts=capability_texts_from_documents(texts, limit=limit) if texts else None,
        anthropic_paths=anthropic or [],
        anthropic_limit=limit,
        normalisation=normalisation,
        n_boot=n_boot,
        device=device,
        progress=progress,
        protocol=spec,
        mode_prefixes=_mode_prefixes(model, mode_prefix, grammar) if mode_prefix else None,
        grammar=grammar,
        external_sets=read_external_sets([{"path": p} for p in external]) if external else None,
    )
    if checkpoints is not None:
        _evaluate_checkpoints(checkpoints, suites, options, out, plot)
        return
    result = evaluate_model(model, suites, **options)
    if out is not None:
        write_json_atomic(out, result)
        typer.echo(f"wrote {out}")
    else:
        typer.echo(json.dumps(result["summary"], indent=2, sort_keys=True))


def _evaluate_checkpoints(
    path: Path, suites: list[str], options: dict, out: Path | None, plot: Path | None
) -> None:
    """Every checkpoint of every training run under ``path``: the trajectory section, each
    checkpoint's summary, and the plot."""
    from alignpt.evals.runner import evaluate_model
    from alignpt.experiment.report_trajectory import trajectory_plot
    from alignpt.experiment.trajectory import (
        checkpoint_models,
        find_training_runs,
        trajectory_points,
    )
    from alignpt.fileio import write_json_atomic

    evaluations: dict[str, list[list[dict]]] = {}
    rows = []
    for (condition, seed), run in find_training_runs(path).items():
        per_checkpoint = []
        for model_dir in checkpoint_models(run):
            result = evaluate_model(model_dir, suites, **options)
            per_checkpoint.append(result)
            provenance = result["provenance"]
            typer.echo(
                f"{condition} seed{seed} step {provenance['step']} "
                f"({provenance['tokens_seen']:,} tokens): evaluated",
                err=True,
            )
            rows.append(
                {
                    "condition": condition,
                    "seed": seed,
                    "step": provenance["step"],
                    "tokens_seen": provenance["tokens_seen"],
                    "model": str(model_dir),
                    "summary": result["summary"],
                }
            )
        evaluations.setdefault(condition, []).append(per_checkpoint)
    section = trajectory_points(evaluations, n_boot=options["n_boot"], seed=0, flag_rule=None)
    if plot is not None:
        trajectory_plot(section, plot)
        typer.echo(f"wrote {plot}", err=True)
    if out is not None:
        write_json_atomic(out, {"trajectory": section, "checkpoints": rows})
        typer.echo(f"wrote {out}")
    else:
        typer.echo(json.dumps(section, indent=2, sort_keys=True))


def _mode_prefixes(model: Path, entries: list[str], grammar: str | None) -> dict[str, str]:
    """``--mode-prefix`` entries, mode names read in the model's grammar (or ``--grammar``)."""
    from alignpt.evals.modes import parse_mode_prefixes
    from alignpt.modeldir import load_tokenizer, model_grammar

    return parse_mode_prefixes(entries, model_grammar(model, load_tokenizer(model), grammar))


def _protocol_spec(formats: str | None, system_prompts: str | None, formats_file: Path | None):
    """The protocol named by the command's options (config defaults where not given)."""
    from pydantic import ValidationError

    from alignpt.config import ProtocolConfig, format_validation_error
    from alignpt.evals.protocol import ProtocolSpec

    fields: dict = {"formats_file": str(formats_file) if formats_file else None}
    if formats is not None:
        fields["formats"] = _split_list(formats)
    if system_prompts is not None:
        fields["system_prompts"] = _split_list(system_prompts)
    try:
        config = ProtocolConfig(**fields)
    except ValidationError as exc:
        raise UserError(format_validation_error("--formats/--system-prompts", exc)[0]) from None
    return ProtocolSpec.from_config(config)


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
    from alignpt.items import read_items

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
