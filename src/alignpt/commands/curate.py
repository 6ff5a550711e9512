"""``alignpt curate``: detect AI discourse and stance in a corpus, then filter / upsample / tag.

``alignpt curate INPUT --out DIR [--spec YAML]`` runs the pipeline (same as ``curate run``);
``alignpt curate train-classifier DOCS --out DIR`` trains the classifier;
``alignpt curate labelled-set --seeds DIR --out DIR`` writes organic train / held-out sets;
``alignpt curate report ...`` measures blocklist and classifier on a labelled set.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from alignpt.commands.options import group_defaulting_to
from alignpt.config import CurateSpec, load_yaml, parse_model
from alignpt.errors import UserError

curate_app = typer.Typer(
    cls=group_defaulting_to("run"),
    help=(
        "Detect AI discourse and stance in a corpus (blocklist + classifier) and filter, "
        "upsample, tag or disclose, as datatrove pipelines.\n\n`alignpt curate INPUT --out DIR "
        "[--spec YAML]` runs (same as `alignpt curate run`)."
    ),
    no_args_is_help=True,
)


def load_spec(path: Path | None) -> CurateSpec:
    """A curate block from YAML (the same fields as a source's ``curate:``), or the defaults."""
    if path is None:
        return CurateSpec()
    return parse_model(CurateSpec, load_yaml(path) or {}, str(path))


@curate_app.command("run")
def run_command(
    source: Path = typer.Argument(
        ..., help="Documents file or directory (JSONL(.gz/.zst), Parquet)."
    ),
    out: Path = typer.Option(..., "--out", help="Output directory (documents/, manifest.json)."),
    spec_path: Path | None = typer.Option(
        None, "--spec", help="YAML curate block (detect, blocklist, classifier, actions, executor)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of upsampling and refill draws."),
    tasks: int | None = typer.Option(None, "--tasks", min=1, help="Override executor.tasks."),
    workers: int | None = typer.Option(None, "--workers", help="Override executor.workers."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Run (or resume, or reuse) a curate pipeline over INPUT."""
    from alignpt.curate import run_curate

    spec = load_spec(spec_path)
    if tasks is not None:
        spec.executor.tasks = tasks
    if workers is not None:
        spec.executor.workers = workers
    result = run_curate(spec, source, out, seed=spec.seed if spec.seed is not None else seed)
    if as_json:
        typer.echo(json.dumps(result.manifest["counts"] | {"stats": result.stats}, indent=2))
        return
    console = Console()
    state = "reused" if result.reused else "curated"
    console.print(f"{state}: {result.documents}")
    print_stats(result.manifest, console)


def print_stats(manifest: dict, console: Console) -> None:
    """Headline counts, then every step's labels, then bad lines."""
    table = Table(title="curate")
    table.add_column("step")
    table.add_column("label")
    table.add_column("value", justify="right")
    for name, value in manifest["counts"].items():
        table.add_row("total", name, f"{value:,}")
    for step, labels in manifest["stats"].items():
        for label, value in labels.items():
            table.add_row(step, label, f"{value:,}" if float(value).is_integer() else f"{value}")
    console.print(table)
    bad = manifest.get("bad_lines", {})
    if bad.get("count"):
        console.print(f"{bad['count']} bad lines skipped:")
        for line in bad["first"]:
            console.print(f"  {line['file']}:{line['line']}: {line['reason']}", markup=False)


@curate_app.command("train-classifier")
def train_command(
    docs: list[Path] = typer.Argument(
        ..., help="Labelled documents (metadata stance, ai_discourse)."
    ),
    out: Path = typer.Option(..., "--out", help="Classifier directory to write."),
    seed: int = typer.Option(0, "--seed"),
    c: float = typer.Option(1.0, "--c", help="Inverse L2 strength of the logistic regressions."),
    balanced: bool = typer.Option(
        True, "--balanced/--unbalanced", help="Weight classes inversely to their frequency."
    ),
) -> None:
    """Train the ai_discourse and stance heads on MiniLM embeddings; save them to --out."""
    from itertools import chain

    from alignpt.curate.classifier import train_classifier
    from alignpt.documents import document_files, read_documents
    from alignpt.fileio import sha256_file

    documents = chain.from_iterable(read_documents(path) for path in docs)
    inputs = {str(f): sha256_file(f) for path in docs for f in document_files(path)}
    _, info = train_classifier(
        documents, out, seed=seed, c=c, balanced=balanced, data={"inputs": inputs}
    )
    Console().print(f"classifier saved to {out}: {json.dumps(info)}", markup=False)


@curate_app.command("labelled-set")
def labelled_set_command(
    seeds: Path = typer.Option(
        ..., "--seeds", help="Folder of .txt files of organic AI discussion (positives)."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for train.jsonl, eval.jsonl."),
    train_per_source: int = typer.Option(250, "--train-per-source", min=1),
    eval_per_source: int = typer.Option(150, "--eval-per-source", min=1),
    seed: int = typer.Option(0, "--seed", help="Seed of the per-source samples."),
) -> None:
    """Organic labelled text (not written by alignpt), split by file into train / held-out."""
    from alignpt.curate.organic import build_labelled_set

    if not seeds.is_dir():
        raise UserError(f"--seeds: {seeds}: no such folder")
    described = build_labelled_set(
        seeds,
        out,
        train_per_source=train_per_source,
        eval_per_source=eval_per_source,
        seed=seed,
    )
    counts = {split: described[f"{split}_counts"] for split in ("train", "eval")}
    Console().print(f"labelled set in {out}: {json.dumps(counts)}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(curate_app, name="curate")
