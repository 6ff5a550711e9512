"""User-facing errors: one clear line, non-zero exit, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input (a file, a field, an option).

    The CLI prints ``str(error)`` as a single line and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(UserError):
    """An invalid config or world file; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def __reduce__(self) -> tuple:  # survives a trip through a worker process intact
        return (type(self), (self.problems,))
