"""The ``acidic`` command line.

``main`` is a click group whose commands live in their own modules and are imported
only when they are used, so ``acidic --version`` stays fast and a command's
dependencies never slow down another's. To add a command (or a command group such as
``acidic worker`` or ``acidic runs``), write it in its own module and name it in
:data:`COMMANDS`.

Every command reports an :class:`acidic.AcidicError` (and an unusable database URL)
as one line on stderr and exits with :data:`EXIT_ERROR`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click
import sqlalchemy as sa

from .. import __version__
from .._app import DEFAULT_DATABASE_URL, App
from .._errors import AcidicError

__all__ = [
    "COMMANDS",
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "CLIError",
    "CLINotFoundError",
    "CLIRefusedError",
    "CLIUsageError",
    "main",
    "open_app",
]

FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)

#: Exit codes, also listed in ``acidic --help``.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4

#: Command name -> "module:attribute" of its click command, imported on first use.
COMMANDS: dict[str, str] = {
    "dashboard": "acidic._cli._dashboard:dashboard",
    "demo": "acidic._cli._demo:demo",
    "migrate": "acidic._cli._root:migrate",
    "prune": "acidic._cli._ops:prune",
    "queues": "acidic._cli._fleet:queues",
    "runs": "acidic._cli._runs:runs",
    "stats": "acidic._cli._ops:stats",
    "worker": "acidic._cli._worker:worker",
    "workers": "acidic._cli._fleet:workers",
}


class CLIError(click.ClickException):
    """An error reported as one line, ``acidic: error: <message>``, with exit code 1."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str) -> None:
        # One line whatever the driver put in its message, so scripts can grep it.
        super().__init__(" ".join(message.split()))

    def show(self, file: Any = None) -> None:
        click.echo(f"acidic: error: {self.format_message()}", err=True)


class CLIUsageError(CLIError):
    """Bad input reported as one line, with exit code 2."""

    exit_code = EXIT_USAGE


class CLINotFoundError(CLIError):
    """No run has the key given: exit code 3."""

    exit_code = EXIT_NOT_FOUND


class CLIRefusedError(CLIError):
    """The run's status does not allow the action: exit code 4."""

    exit_code = EXIT_REFUSED


class LazyGroup(click.Group):
    """A group that imports each command from :data:`COMMANDS` when it is needed, and
    turns acidic's errors into :class:`CLIError`."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):  # pragma: no cover - a wiring mistake
            raise TypeError(f"{target} is not a click command")
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AcidicError as exc:
            raise CLIError(str(exc)) from exc


def database_url_option(help_text: str | None = None) -> Callable[[FC], FC]:
    """The ``--database-url`` option shared by commands that open an App."""
    return click.option(
        "--database-url",
        "database_url",
        metavar="URL",
        default=None,
        help=help_text
        or (
            "SQLAlchemy URL of the database holding acidic's tables "
            f"[default: $ACIDIC_DATABASE_URL, else {DEFAULT_DATABASE_URL}]"
        ),
    )


def resolve_url(database_url: str | None) -> str:
    """The URL a command uses: the option, else ``$ACIDIC_DATABASE_URL``, else SQLite."""
    return database_url or os.environ.get("ACIDIC_DATABASE_URL") or DEFAULT_DATABASE_URL


def shown_url(url: str) -> str:
    """``url`` as it may be printed: its password hidden."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def open_app(url: str, **options: Any) -> App:
    """An :class:`App` on ``url`` (an unusable URL raises a clear AcidicError)."""
    return App(url, **options)


HELP = f"""Durable, idempotent, multi-step jobs on a SQL database.

\b
Exit codes:
  {EXIT_OK}  success
  {EXIT_ERROR}  an error (a database or schema problem, a bad URL, a failed demo),
     reported as one line on stderr: "acidic: error: ..."
  {EXIT_USAGE}  wrong usage: unknown command or option, bad argument, a bulk
     action without --yes when there is no terminal to ask on
  {EXIT_NOT_FOUND}  no run has the KEY given (acidic runs show|retry|resume|cancel)
  {EXIT_REFUSED}  the run's status does not allow the action (e.g. retry of a run
     that did not fail), or some runs of a bulk action were left as they were
"""


@click.group(cls=LazyGroup, lazy=COMMANDS, help=HELP)
@click.version_option(__version__, "--version", prog_name="acidic", message="%(prog)s %(version)s")
def main() -> None:
    pass


@click.command()
@database_url_option()
def migrate(database_url: str | None) -> None:
    """Create or upgrade acidic's tables.

    Prints each migration applied, or that the schema is up to date. Safe to run
    repeatedly and from several processes at once.
    """
    url = resolve_url(database_url)
    where = shown_url(url)
    app = open_app(url)
    try:
        applied = app.migrate()
    except AcidicError as exc:
        raise CLIError(f"{where}: {exc}") from exc
    finally:
        app.close()
    if not applied:
        click.echo(f"acidic's tables in {where} are up to date: no migration to apply")
        return
    for name in applied:
        click.echo(f"applied migration {name}")
    click.echo(f"migrated acidic's tables in {where}: {len(applied)} migration(s) applied")
