"""``alignpt plan CONFIG``: parameters, tokens, FLOPs, GPU-hours, disk and memory of a study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from alignpt.config import load_experiment


def plan_command(
    config: Path = typer.Argument(..., help="Experiment YAML."),
    gpu: str | None = typer.Option(None, "--gpu", help="h100, h200 or a100 (plan.gpu)."),
    gpus: int | None = typer.Option(None, "--gpus", help="GPUs per run (plan.gpus)."),
    mfu: float | None = typer.Option(None, "--mfu", help="Assumed MFU, 0-1 (plan.mfu)."),
    price: float | None = typer.Option(
        None, "--price-per-gpu-hour", help="Price of one GPU-hour (plan.price_per_gpu_hour)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Estimate what every condition and seed of CONFIG costs before training it."""
    from pydantic import ValidationError

    from alignpt.config import format_validation_error
    from alignpt.errors import ConfigError
    from alignpt.experiment.plan import build_plan, plan_json, resolve_plan

    experiment = load_experiment(config)
    try:
        plan = resolve_plan(experiment, gpu=gpu, gpus=gpus, mfu=mfu, price_per_gpu_hour=price)
    except ValidationError as exc:  # a bad flag value, named like the config field it sets
        raise ConfigError(format_validation_error(f"{config}: plan (or its flag)", exc)) from None
    report = build_plan(experiment, plan, config)
    if as_json:
        typer.echo(plan_json(report))
    else:
        print_plan(report, Console())


def print_plan(report: dict[str, Any], console: Console) -> None:
    """The report as rich tables: model, per-condition phases, totals, disk, memory."""
    from alignpt.experiment.plan import GIB, fmt_amount, fmt_bytes, fmt_count

    model, hw, batch = report["model"], report["hardware"], report["batch"]
    params = model["parameters"]
    console.print(
        f"[bold]{report['experiment']}[/bold]: preset {model['preset']} "
        f"(d {model['hidden_size']}, {model['layers']} layers, {model['heads']} heads, "
        f"MLP {model['intermediate_size']}, vocab {model['vocab_size']}, seq {model['seq_len']})"
        f" — {fmt_count(params['total'])} parameters ({fmt_count(params['non_embedding'])} "
        f"non-embedding, {fmt_count(params['embedding'])} embedding)"
    )
    console.print(
        f"FLOPs per token {fmt_count(model['flops_per_token'])} = {model['flops_formula']}; "
        f"{hw['gpus_per_run']} x {hw['gpu'].upper()} at {hw['mfu']:.0%} MFU of "
        f"{hw['peak_bf16_flops'] / 1e12:.1f} TFLOP/s bf16; global batch "
        f"{batch['global_sequences']} x {model['seq_len']} = {batch['tokens_per_step']:,} tokens"
    )
    cost = hw["price_per_gpu_hour"] is not None
    runs = Table(title="per training run (one condition, one seed)")
    for column in ("condition", "steps", "tokens", "FLOPs", "GPU-hours", "wall hours"):
        runs.add_column(column, justify="left" if column == "condition" else "right")
    if cost:
        runs.add_column("cost", justify="right")
    phases = Table(title="tokens per phase and source share of each stream")
    for column in ("condition", "phase", "steps", "tokens", "source shares"):
        phases.add_column(column, justify="right" if column in ("steps", "tokens") else "left")
    for cname, cond in report["conditions"].items():
        runs.add_row(
            cname,
            f"{cond['steps']:,}",
            fmt_count(cond["tokens"]),
            f"{cond['flops']:.3g}",
            fmt_amount(cond["gpu_hours"]),
            fmt_amount(cond["wall_hours"]),
            *([fmt_amount(cond["cost"])] if cost else []),
        )
        for index, phase in enumerate(cond["phases"]):
            shares = ", ".join(f"{name} {share:.1%}" for name, share in phase["shares"].items())
            phases.add_row(
                cname if index == 0 else "",
                phase["phase"],
                f"{phase['steps']:,}",
                fmt_count(phase["tokens"]),
                shares,
            )
    console.print(runs)
    console.print(phases)
    total = report["total"]
    line = (
        f"[bold]total[/bold]: {len(report['conditions'])} condition(s) x "
        f"{len(report['seeds'])} seed(s) = {report['runs']} runs, {total['flops']:.3g} FLOPs, "
        f"{fmt_amount(total['gpu_hours'])} {hw['gpu'].upper()}-hours"
    )
    if cost:
        line += f", cost {fmt_amount(total['cost'])} at {hw['price_per_gpu_hour']:g} per GPU-hour"
    console.print(line)
    disk = report["disk"]
    first = next(iter(report["conditions"].values()))
    console.print(
        f"disk: shards {fmt_bytes(disk['shard_bytes'])} ({fmt_count(disk['corpus_tokens'])} "
        f"tokens x {disk['bytes_per_token']} B); one checkpoint "
        f"{fmt_bytes(disk['checkpoint_bytes'])} (fp32 weights + AdamW state), "
        f"{first['checkpoints_written']:,} written per run, peak "
        f"{fmt_bytes(first['checkpoint_disk_peak_bytes'])} per run, "
        f"{fmt_bytes(total['checkpoint_disk_peak_bytes'])} for all runs"
    )
    memory = report["memory"]
    mem = Table(
        title=f"memory per GPU, micro-batch {batch['micro_batch_per_gpu']} x "
        f"{model['seq_len']} ({memory['capacity_gib']:.0f} GiB on one {hw['gpu'].upper()})"
    )
    for column in ("strategy", "weights+grads+AdamW", "other", "activations", "total", "fits"):
        mem.add_column(column, justify="left" if column == "strategy" else "right")
    for name, other in (("ddp", "ddp_buckets_gib"), ("fsdp", "gathered_layers_gib")):
        entry = memory[name]
        fits = entry["total_gib"] <= memory["capacity_gib"]
        mem.add_row(
            name.upper(),
            fmt_bytes(entry["weights_grads_adamw_gib"] * GIB),
            fmt_bytes(entry[other] * GIB),
            fmt_bytes(entry["activations_gib"] * GIB),
            fmt_bytes(entry["total_gib"] * GIB),
            "yes" if fits else "no",
        )
    console.print(mem)
    console.print(f"activations ≈ {memory['formula']}")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
