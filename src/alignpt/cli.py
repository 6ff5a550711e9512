"""The ``alignpt`` command line: one typer app, one sub-command group per stage."""

from __future__ import annotations

import sys

import click
import typer
import typer.core
from rich.console import Console
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from alignpt import __version__
from alignpt.commands import analyse as analyse_commands
from alignpt.commands import curate as curate_commands
from alignpt.commands import docs as docs_commands
from alignpt.commands import evals_export as evals_export_commands
from alignpt.commands import evaluate as evaluate_commands
from alignpt.commands import generate as generate_commands
from alignpt.commands import mix as mix_commands
from alignpt.commands import plan as plan_commands
from alignpt.commands import posttrain as posttrain_commands
from alignpt.commands import run as run_commands
from alignpt.commands import sample as sample_commands
from alignpt.commands import train as train_commands
from alignpt.errors import UserError

_display_type_rich = typer.core.TyperOption.display_type_rich


def _flag_type(self: typer.core.TyperOption, ctx: click.Context) -> str | None:
    """No ``<bool>`` type beside flags (typer >= 0.17 shows one; a flag takes no value)."""
    return None if self.is_flag else _display_type_rich(self, ctx)


typer.core.TyperOption.display_type_rich = _flag_type  # typer offers no setting for this

app = typer.Typer(
    name="alignpt",
    help="Alignment pretraining: generate → curate → mix → train → posttrain → evaluate → report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"alignpt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """alignpt: shape and measure a language model's prior over AI personas."""


# Each stage registers its commands here.
analyse_commands.register(app)
curate_commands.register(app)
docs_commands.register(app)
evaluate_commands.register(app)
evals_export_commands.register(app)
generate_commands.register(app)
mix_commands.register(app)
plan_commands.register(app)
posttrain_commands.register(app)
run_commands.register(app)
sample_commands.register(app)
train_commands.register(app)


def _usage_line(error: UsageError) -> str:
    """A parse error as one line: the command, what is wrong, where help is."""
    command = error.ctx.command_path if error.ctx is not None else "alignpt"
    message = " ".join(error.format_message().split())
    return f"{command}: {message} (see {command} --help)"


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit.

    Typer's click runs outside its standalone mode so that its own parse errors (a bad
    ``--n abc``, an unknown option, a missing argument) reach us and print as one line too,
    instead of its multi-line box (typer vendors click and exports these error classes only from
    ``typer._click``); ``--help``, ``--version`` and ``typer.Exit`` codes pass through unchanged.
    """
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as error:
        error.show()  # ``alignpt`` (or a group) with no arguments: its help, as click does
        sys.exit(error.exit_code)
    except UsageError as error:
        err_console.print(f"error: {_usage_line(error)}", markup=False)
        sys.exit(error.exit_code)
    except UserError as error:
        for line in str(error).splitlines() or ["error"]:
            err_console.print(f"error: {line}", markup=False)
        sys.exit(error.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    if isinstance(code, int) and code != 0:
        sys.exit(code)


if __name__ == "__main__":
    main()
