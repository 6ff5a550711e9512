"""``alignpt train``: pretrain one condition's model from scratch on its mix."""

from __future__ import annotations

from pathlib import Path

import typer

from alignpt.config import load_experiment


def train_command(
    config: Path = typer.Argument(..., help="Experiment YAML."),
    condition: str = typer.Option(..., "--condition", "-c", help="Condition to train."),
    seed: list[int] = typer.Option(
        None, "--seed", "-s", help="Training seed (repeatable); default: the config's train.seeds."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint."),
    force: bool = typer.Option(False, "--force", help="Discard what the output dir holds."),
    out: Path | None = typer.Option(
        None, "--out", help="Output dir (default runs/<name>/train/<condition>/seed<S>)."
    ),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda if available)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live progress bar."),
) -> None:
    """Pretrain CONDITION's model; works alone, under torchrun and under accelerate launch."""
    from alignpt.experiment.sources import prepare_mix
    from alignpt.train import train_condition  # torch is imported only when training
    from alignpt.train.distributed import teardown_distributed

    experiment = load_experiment(config)
    experiment.condition(condition)  # one clear line for a name the config does not define
    seeds = seed or experiment.train.seeds
    if out is None:
        out_dirs = [experiment.layout.train_run(condition, s) for s in seeds]
    elif len(seeds) > 1:
        out_dirs = [out / f"seed{s}" for s in seeds]
    else:
        out_dirs = [out]
    try:
        for one_seed, out_dir in zip(seeds, out_dirs, strict=True):
            final = train_condition(
                experiment.model,
                experiment.train,
                condition,
                seed=one_seed,
                experiment=experiment.name,
                resume=resume,
                out_dir=out_dir,
                force=force,
                progress=progress,
                device=device,
                prepare_mix=lambda: prepare_mix(experiment, progress=progress).dir,
            )
            typer.echo(f"{condition} seed {one_seed}: {final}")
    finally:  # leave the process group (torchrun / accelerate launch), if one was joined
        teardown_distributed()


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
