"""``alignpt mix inspect``: per condition and phase, tokens by source and stance, shares, epochs."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from alignpt.config import MixSpec
from alignpt.errors import UserError
from alignpt.fileio import read_manifest, sha256_json
from alignpt.mix.build import mix_settings


def mix_report(config: MixSpec) -> dict[str, Any]:
    """The inspection numbers of a finished mix, checked against the current config."""
    mix_dir = config.layout.mix
    manifest = read_manifest(mix_dir) if mix_dir.is_dir() else None
    if manifest is None:
        raise UserError(f"{mix_dir}: no finished mix; run `alignpt mix CONFIG` first")
    if manifest.get("settings_hash") != sha256_json(mix_settings(config)):
        raise UserError(f"{mix_dir}: the mix was built from a different config; rebuild it")
    counts = manifest["counts"]
    return {
        "mix_dir": str(mix_dir),
        "sources": counts["sources"],
        "conditions": counts["conditions"],
    }


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    """Rich tables: one per condition and phase."""
    console = console or Console()
    sources = Table(title=f"sources ({report['mix_dir']})")
    for column in ("source", "documents", "tokens", "tokens by stance"):
        sources.add_column(column, justify="left" if column.startswith("source") else "right")
    for name, counts in report["sources"].items():
        stance = ", ".join(f"{k} {v:,}" for k, v in counts["tokens_by_stance"].items())
        sources.add_row(name, f"{counts['documents']:,}", f"{counts['tokens']:,}", stance)
    console.print(sources)
    for cname, phases in report["conditions"].items():
        for phase, summary in phases.items():
            table = Table(
                title=f"{cname} / {phase}: {summary['tokens']:,} tokens "
                f"(budget {summary['budget_tokens']:,})"
            )
            for column in ("source", "tokens", "share", "target", "epochs", "passes"):
                table.add_column(column, justify="left" if column == "source" else "right")
            for name, tokens in summary["tokens_by_source"].items():
                table.add_row(
                    name,
                    f"{tokens:,}",
                    f"{summary['share_by_source'][name]:.2%}",
                    f"{summary['target_share'][name]:.2%}",
                    f"{summary['epochs_by_source'][name]:.2f}",
                    f"{summary['passes_by_source'][name]:.2f}",
                )
            stance = ", ".join(
                f"{k} {v:,} ({v / max(summary['tokens'], 1):.1%})"
                for k, v in summary["tokens_by_stance"].items()
            )
            table.caption = f"by stance: {stance}"
            console.print(table)
