"""``alignpt run CONFIG`` (every stage of an experiment) and ``alignpt demo``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer
from rich.console import Console

from alignpt.errors import UserError

DEMO_CONFIG = "demo.yaml"


def demo_config_path() -> Path:
    """The packaged quickstart experiment."""
    return Path(str(resources.files("alignpt") / "configs" / DEMO_CONFIG))


def run_command(
    config: Path = typer.Argument(..., help="Experiment YAML."),
    runs_dir: Path | None = typer.Option(None, "--runs-dir", help="Override runs_dir."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
    force: bool = typer.Option(
        False, "--force", help="Redo stages whose output came from a different config."
    ),
) -> None:
    """Run generate → mix → train → evaluate → report; finished stages are reused."""
    from alignpt.config import load_experiment
    from alignpt.experiment.runner import run_experiment

    experiment = load_experiment(config)
    if runs_dir is not None:
        experiment = experiment.model_copy(update={"runs_dir": str(runs_dir)})
    # Progress bars only on a terminal: in a pipe or a log they leave blank lines behind.
    outcome = run_experiment(experiment, progress=progress and Console().is_terminal, force=force)
    Console().print(f"\n[bold green]report:[/] {outcome.report}")


def demo_command(
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where runs/demo goes."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """The embedded default: four data conditions on the default world, offline on a CPU."""
    path = demo_config_path()
    if not path.is_file():
        raise UserError(f"{path}: packaged demo config is missing; reinstall alignpt")
    run_command(path, runs_dir=runs_dir, progress=progress, force=False)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("demo")(demo_command)
