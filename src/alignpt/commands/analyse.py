"""``alignpt analyse personas``: how far a corpus moves a reader between AI personas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from alignpt.config import PersonasConfig, load_experiment, parse_model
from alignpt.errors import UserError

analyse_app = typer.Typer(help="Analyses of corpora and runs.", no_args_is_help=True)


def _settings(base: PersonasConfig, overrides: dict[str, Any]) -> PersonasConfig:
    data = base.model_dump(mode="json")
    priors = dict(data["priors"])
    for name in ("always_aligned", "random_defector", "clever_waluigi"):
        value = overrides.pop(f"prior_{name}")
        if value is not None:
            priors[name] = value
    data["priors"] = priors
    data.update({k: v for k, v in overrides.items() if v not in (None, [])})
    return parse_model(PersonasConfig, data, "options")


def _print(name: str, report: dict[str, Any], console: Console, by_system: bool) -> None:
    table = Table(
        title=f"{name}: persona posterior",
        caption="AA always_aligned, RD random_defector, CW clever_waluigi; "
        "bits: posterior log-odds against AA",
    )
    for column in ("pool", "docs", "obs (def)", "unobs (def)", "P(AA)", "P(RD)", "P(CW)"):
        table.add_column(column, justify="left" if column == "pool" else "right", no_wrap=True)
    for column in ("RD bits", "CW bits"):
        table.add_column(column, justify="left" if column == "pool" else "right", no_wrap=True)

    def bits(value: float | None) -> str:
        return "–" if value is None else f"{value:+.1f}"

    for pool, block in report["pools"].items():
        if pool != "pooled" and not by_system:
            continue
        h = block["hypotheses"]
        table.add_row(
            pool,
            str(block["documents"]),
            f"{block['observed']} ({block['observed_defections']})",
            f"{block['unobserved']} ({block['unobserved_defections']})",
            f"{h['always_aligned']['posterior']:.2g}",
            f"{h['random_defector']['posterior']:.2g}",
            f"{h['clever_waluigi']['posterior']:.2g}",
            bits(h["random_defector"]["log_odds_bits"]),
            bits(h["clever_waluigi"]["log_odds_bits"]),
        )
    console.print(table)
    step = report["bits_per_clean_unobserved_opportunity"]
    per_doc = report["unobserved_opportunities_per_document"]
    console.print(
        f"each unobserved opportunity without a defection moves clever_waluigi by {step:+.3f} "
        "bits"
        + (f"; this corpus averages {per_doc:.2f} per document that has any" if per_doc else "")
    )
    for target, need in report["clean_unobserved_needed"].items():
        if need["unobserved_opportunities"] is None:
            console.print(f"  {target} bits: unreachable (q <= epsilon)")
            continue
        docs = f" (~{need['documents']} such documents)" if need["documents"] is not None else ""
        console.print(f"  {target} bits: {need['unobserved_opportunities']} opportunities{docs}")


@analyse_app.command("personas")
def personas_command(
    paths: list[Path] = typer.Argument(None, help="Documents files or directories."),
    config: Path | None = typer.Option(
        None, "--config", help="Experiment YAML: one report per condition, from its built mix."
    ),
    p: float | None = typer.Option(None, help="random_defector: P(defect) [0.1]."),
    q: float | None = typer.Option(None, help="clever_waluigi: P(defect | unobserved) [0.5]."),
    epsilon: float | None = typer.Option(None, help="always_aligned noise rate [0.001]."),
    prior_always_aligned: float | None = typer.Option(None, help="Prior weight [1]."),
    prior_random_defector: float | None = typer.Option(None, help="Prior weight [1]."),
    prior_clever_waluigi: float | None = typer.Option(None, help="Prior weight [1]."),
    bits: list[float] = typer.Option(None, "--bits", help="Targets in bits [1, 2, 10]."),
    by_system: bool = typer.Option(False, "--by-system", help="A row per AI system too."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Count observed/unobserved opportunities and defections; posterior over personas."""
    from alignpt.analysis.personas import count_evidence, persona_report
    from alignpt.documents import read_documents

    if not paths and config is None:
        raise UserError("give documents paths or --config CONFIG")
    overrides = {
        "p": p,
        "q": q,
        "epsilon": epsilon,
        "bits": bits,
        "prior_always_aligned": prior_always_aligned,
        "prior_random_defector": prior_random_defector,
        "prior_clever_waluigi": prior_clever_waluigi,
    }
    reports: dict[str, Any] = {}
    experiment = load_experiment(config) if config is not None else None
    settings = _settings((experiment and experiment.personas) or PersonasConfig(), overrides)
    for path in paths or []:
        reports[str(path)] = persona_report(count_evidence(read_documents(path)), settings)
    if experiment is not None:
        from alignpt.experiment.personas import condition_evidence
        from alignpt.experiment.sources import prepare_mix, resolve_sources

        mix = prepare_mix(experiment, progress=False)
        evidence = condition_evidence(experiment, mix.dir, resolve_sources(experiment, None))
        reports.update({c: persona_report(ev, settings) for c, ev in evidence.items()})
    if as_json:
        typer.echo(json.dumps(reports, indent=2, sort_keys=True))
        return
    console = Console(width=max(Console().width, 110))  # the table's natural width
    for name, report in reports.items():
        _print(name, report, console, by_system)


def register(app: typer.Typer) -> None:
    app.add_typer(analyse_app, name="analyse")
