"""Command-line options checked against a config model, with errors naming the flag."""

from __future__ import annotations

from typing import Any

import click
from pydantic import BaseModel, ValidationError
from typer.core import TyperGroup

from alignpt.errors import ConfigError


def flag(field: str) -> str:
    """The command-line flag of a config field: ``max_length`` -> ``--max-length``."""
    return "--" + field.replace("_", "-")


def parse_options(model: type[BaseModel], options: dict[str, Any]) -> Any:
    """Validate options; ConfigError with one line per problem, each naming its ``--flag``."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        lines = []
        for problem in exc.errors():
            message = problem["msg"].removeprefix("Value error, ")
            loc = [str(part) for part in problem["loc"]]
            where = flag(loc[0]) + "".join(f"[{part}]" for part in loc[1:]) if loc else "options"
            lines.append(f"{where}: {message}")
        raise ConfigError(lines) from None


def stage_defaults(field: str, models: dict[str, type[BaseModel]]) -> str:
    """``sft 2, dpo 1``: each model's default for ``field``, for help texts."""
    return ", ".join(
        f"{name} {cls.model_fields[field].default}"
        for name, cls in models.items()
        if field in cls.model_fields
    )


def group_defaulting_to(command: str) -> type[TyperGroup]:
    """A command group whose first argument, when it is not a sub-command, goes to ``command``.

    So ``alignpt mix CONFIG`` is ``alignpt mix build CONFIG``.
    """

    class DefaultingGroup(TyperGroup):
        def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
            if args and not args[0].startswith("-") and args[0] not in self.commands:
                args = [command, *args]
            return super().parse_args(ctx, args)

    return DefaultingGroup
