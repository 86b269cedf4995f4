"""What the operators' commands share (``acidic runs``, ``stats``, ``prune``,
``dashboard``): the options that name the App and select runs, opening the App, and
the console output (a rich table on a terminal, plain text in a pipe, JSON with
``--json``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from .._admin import RunFilter, parse_since
from .._app import App
from .._run import RunStatus
from ._root import open_app, resolve_url

__all__ = [
    "STATUS_STYLE",
    "app_option",
    "console",
    "emit_json",
    "filter_options",
    "json_option",
    "make_filter",
    "opened",
    "status_text",
]

F = TypeVar("F", bound=Callable[..., Any])

STATUS_STYLE = {
    "pending": "cyan",
    "running": "bold blue",
    "halted": "magenta",
    "scheduled": "yellow",
    "awaiting": "yellow",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "dim",
}


def console() -> Console:
    """Standard output: a terminal's own width, else wide enough for a pipe or a file."""
    out = Console()
    if not out.is_terminal:
        out = Console(width=200, no_color=True, highlight=False, soft_wrap=False)
    return out


def status_text(status: str) -> Text:
    """A status in its colour."""
    return Text(status, style=STATUS_STYLE.get(status, ""))


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON (for ``--json``)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def app_option(help_text: str | None = None) -> Callable[[F], F]:
    """``--app module:attribute``: the App whose jobs the command needs."""
    return click.option(
        "--app",
        "app_path",
        metavar="MODULE:ATTR",
        default=None,
        help=help_text
        or (
            "the acidic.App registering the jobs (its database is used): needed for "
            "redaction, retry budgets and checking steps"
        ),
    )


def json_option(f: F) -> F:
    """``--json``: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")(f)


def traceback_option(f: F) -> F:
    """``--traceback``: the whole traceback when importing ``--app`` fails."""
    return click.option(
        "--traceback",
        "show_traceback",
        is_flag=True,
        help="if importing --app fails, print the whole traceback, not one line",
    )(f)


@contextlib.contextmanager
def opened(
    database_url: str | None, app_path: str | None, show_traceback: bool | None = None
) -> Iterator[App]:
    """The App named by ``--app`` (with its own database), else one on the URL
    (``show_traceback``: see :func:`acidic._cli._worker.load_app`)."""
    if app_path is not None:
        if database_url is not None:
            raise click.UsageError(
                "give --app or --database-url, not both: --app uses the App's own database"
            )
        from ._worker import load_app  # noqa: PLC0415 - only --app needs it

        yield load_app(app_path, show_traceback)
        return
    app = open_app(resolve_url(database_url))
    try:
        yield app
    finally:
        app.close()


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


def filter_options(f: F) -> F:
    """The options that select runs."""
    options = [
        click.option(
            "--status",
            "statuses",
            multiple=True,
            metavar="S[,S]",
            help="only runs in these statuses (repeat or comma-separate): "
            + ", ".join(s.value for s in RunStatus),
        ),
        click.option("--job", "jobs", multiple=True, metavar="NAME", help="only runs of this job"),
        click.option(
            "--queue",
            "queues",
            multiple=True,
            metavar="NAME",
            help="only runs of this queue; '-' for inline runs (started by app.run)",
        ),
        click.option("--key-prefix", metavar="TEXT", help="only keys starting with TEXT"),
        click.option(
            "--since",
            metavar="WHEN",
            help="only runs created, claimed or finished since WHEN: a duration ago "
            "(30m, 12h, 7d) or an ISO 8601 time",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def make_filter(
    statuses: tuple[str, ...],
    jobs: tuple[str, ...],
    queues: tuple[str, ...],
    key_prefix: str | None,
    since: str | None,
) -> RunFilter:
    """The filter the options ask for; bad values are usage errors naming them."""
    chosen = _split(statuses)
    known = [s.value for s in RunStatus]
    for status in chosen:
        if status not in known:
            raise click.BadParameter(
                f"{status!r} is not a status; the statuses are {', '.join(known)}",
                param_hint="--status",
            )
    when = None
    if since is not None:
        try:
            when = parse_since(since, dt.datetime.now(dt.UTC))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    return RunFilter(
        statuses=chosen,
        jobs=_split(jobs),
        queues=tuple(None if q == "-" else q for q in _split(queues)),
        key_prefix=key_prefix or None,
        since=when,
    )
