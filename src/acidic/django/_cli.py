"""``manage.py acidic ...``: the ``acidic`` command line on the project's App.

Every command and option of ``acidic`` is there, with the same exit codes; commands
that take ``--app`` get the project's App (``acidic.django:app``, whose jobs the
start-up discovered), those that take ``--database-url`` the settings' database,
unless the command line names its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from .._cli import main
from ._settings import database_url, read_settings

__all__ = ["APP_PATH", "run"]

#: What ``--app`` names for the commands that take it.
APP_PATH = "acidic.django:app"


def _leaf(args: Sequence[str]) -> tuple[click.Command | None, int]:
    """The command ``args`` name (a group's subcommand included) and how many of the
    leading arguments name it."""
    command: click.Command = main
    used = 0
    while isinstance(command, click.Group) and used < len(args):
        name = args[used]
        if name.startswith("-"):
            break
        with click.Context(command) as ctx:
            found = command.get_command(ctx, name)
        if found is None:
            return None, used
        command, used = found, used + 1
    return command, used


def configured(args: Sequence[str]) -> list[str]:
    """``args`` with the project's App or database added where the command takes one."""
    args = list(args)
    command, used = _leaf(args)
    if command is None or isinstance(command, click.Group):
        return args
    given = set(args[used:])
    if given & {"--help", "--app", "--database-url"} or any(
        a.startswith(("--app=", "--database-url=")) for a in given
    ):
        return args
    names = {p.name for p in command.params}
    if "app_path" in names:
        return [*args[:used], "--app", APP_PATH, *args[used:]]
    if "database_url" in names:
        url = database_url(read_settings().database)
        return [
            *args[:used],
            "--database-url",
            url.render_as_string(hide_password=False),
            *args[used:],
        ]
    return args


def run(args: Sequence[str], prog_name: str) -> int:
    """Run ``acidic ARGS``; return its exit code."""
    try:
        main.main(args=configured(args), prog_name=prog_name, standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
