"""``acidic runs``: list, show, retry, resume and cancel runs from the terminal.

Reading goes through :class:`acidic._admin.Admin`; actions through the App's own
``retry``, ``resume`` and ``cancel``, one run at a time, so a bulk action makes the
same checks as a call in code. Output is a rich table on a terminal and JSON with
``--json``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from .._admin import Admin, RunDetail, RunFilter, RunSummary, parse_since
from .._app import App
from .._errors import AcidicError, UnknownKeyError, UnknownRecoveryPointError
from .._run import RunStatus
from ._root import (
    EXIT_REFUSED,
    CLINotFoundError,
    CLIRefusedError,
    CLIUsageError,
    database_url_option,
    open_app,
    resolve_url,
)

__all__ = [
    "ACTIONS",
    "app_option",
    "console",
    "fmt_duration",
    "fmt_time",
    "json_option",
    "opened",
    "runs",
]

F = TypeVar("F", bound=Callable[..., Any])

STATUS_STYLE = {
    "pending": "cyan",
    "running": "bold blue",
    "halted": "magenta",
    "scheduled": "yellow",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "dim",
}


@dataclass(frozen=True, slots=True)
class Action:
    """A state change ``acidic runs`` can make, and the statuses it applies to."""

    name: str
    done: str
    statuses: tuple[str, ...]


ACTIONS = {
    "retry": Action("retry", "retried", (RunStatus.FAILED.value,)),
    "resume": Action("resume", "resumed", (RunStatus.HALTED.value, RunStatus.SCHEDULED.value)),
    "cancel": Action(
        "cancel",
        "cancelled",
        tuple(
            s.value
            for s in (
                RunStatus.PENDING,
                RunStatus.SCHEDULED,
                RunStatus.HALTED,
                RunStatus.FAILED,
                RunStatus.RUNNING,
            )
        ),
    ),
}


# -- shared helpers (also used by acidic stats, prune and dashboard) ------------------


def console() -> Console:
    """Standard output: a terminal's own width, else wide enough for a pipe or a file."""
    out = Console()
    if not out.is_terminal:
        out = Console(width=200, no_color=True, highlight=False, soft_wrap=False)
    return out


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


def fmt_time(value: dt.datetime | None) -> str:
    """A UTC time to the second, or ``-``."""
    return "-" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    """``412 ms``, ``3.20 s``, ``2m 05s``, ``1h 02m``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


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


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


# -- commands ---------------------------------------------------------------------------


@click.group()
def runs() -> None:
    """List, inspect, retry, resume and cancel runs."""


@runs.command(name="list")
@database_url_option()
@app_option()
@filter_options
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="most runs to show",
)
@click.option("--cursor", metavar="CURSOR", help="show the page after this one (printed below)")
@json_option
def list_runs(
    database_url: str | None,
    app_path: str | None,
    statuses: tuple[str, ...],
    jobs: tuple[str, ...],
    queues: tuple[str, ...],
    key_prefix: str | None,
    since: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List runs, newest first.

    \b
    Examples:
      acidic runs list --status failed --since 1h
      acidic runs list --job billing.charge --queue default --json
    """
    flt = make_filter(statuses, jobs, queues, key_prefix, since)
    if cursor is not None and not cursor.isdigit():
        raise click.BadParameter(
            f"{cursor!r} is not a cursor printed by acidic runs list", param_hint="--cursor"
        )
    with opened(database_url, app_path) as app:
        admin = Admin(app)
        page = admin.list_runs(flt, limit=limit, cursor=cursor)
        total = admin.count_runs(flt)
    if as_json:
        _emit_json(
            {
                "runs": [r.to_json() for r in page.runs],
                "total": total,
                "next_cursor": page.next_cursor,
            }
        )
        return
    out = console()
    if not page.runs:
        out.print(f"no runs match ({flt.describe()})")
        return
    out.print(_runs_table(page.runs))
    more = f"; next page: --cursor {page.next_cursor}" if page.next_cursor else ""
    out.print(f"{len(page.runs)} of {total} matching run(s){more}", highlight=False)


def _runs_table(rows: list[RunSummary]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    table.add_column("key", overflow="fold")
    table.add_column("job", overflow="fold")
    table.add_column("status")
    table.add_column("queue")
    table.add_column("attempts", justify="right")
    table.add_column("next step", overflow="fold")
    table.add_column("updated (UTC)", no_wrap=True)
    table.add_column("error", overflow="fold")
    for r in rows:
        attempts = f"{r.attempts}/{r.max_attempts}" if r.max_attempts else str(r.attempts)
        error = f"{r.error.type.rsplit('.', 1)[-1]}: {r.error.message}" if r.error else ""
        table.add_row(
            Text(r.key),
            Text(r.job),
            _status(r.status),
            Text(r.queue or "(inline)"),
            attempts,
            Text(r.recovery_point or "-"),
            fmt_time(r.updated_at),
            # Short: the whole error is in `acidic runs show`.
            Text(error if len(error) <= 60 else error[:59] + "…"),
        )
    return table


@runs.command()
@click.argument("key")
@database_url_option()
@app_option()
@json_option
def show(key: str, database_url: str | None, app_path: str | None, as_json: bool) -> None:
    """Show one run: arguments, context, result, error and its step timeline."""
    with opened(database_url, app_path) as app:
        detail = Admin(app).detail(key)
    if detail is None:
        raise CLINotFoundError(f"no run has the key {key!r}")
    if as_json:
        _emit_json(detail.to_json())
        return
    _print_detail(console(), detail)


def _json_block(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def _print_detail(out: Console, d: RunDetail) -> None:
    s = d.summary
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    head.add_row("key", Text(s.key))
    head.add_row("job", Text(s.job))
    head.add_row("status", _status(s.status))
    head.add_row("queue", Text(s.queue or "(inline: started by app.run)"))
    head.add_row("next step", Text(s.recovery_point or "-"))
    limit = f" of {s.max_attempts}" if s.max_attempts else ""
    head.add_row("attempts", f"{s.attempts}{limit}")
    head.add_row("priority", str(s.priority))
    head.add_row("created", fmt_time(s.created_at))
    head.add_row("last claimed", fmt_time(s.last_run_at))
    head.add_row("finished", fmt_time(s.finished_at))
    if s.run_at is not None:
        head.add_row("due", fmt_time(s.run_at))
    if s.locked_at is not None:
        head.add_row("locked", fmt_time(s.locked_at))
    head.add_row("steps", Text(" → ".join(d.steps)))
    out.print(Panel(head, title="run", title_align="left", expand=False))

    if d.hidden_reason:
        out.print(Text(d.hidden_reason, style="yellow"))
    else:
        out.print(
            Panel(Text(_json_block(d.args)), title="arguments", title_align="left", expand=False)
        )
        out.print(
            Panel(Text(_json_block(d.ctx)), title="context", title_align="left", expand=False)
        )
    if s.status == RunStatus.SUCCEEDED:
        out.print(
            Panel(Text(_json_block(d.result)), title="result", title_align="left", expand=False)
        )
    if s.error is not None:
        title = f"error in step {s.error.step}" if s.error.step else "error"
        body = Text(f"{s.error.type}: {s.error.message}\n\n", style="bold red")
        body.append(s.error.traceback.rstrip())
        out.print(Panel(body, title=escape(title), title_align="left", border_style="red"))

    table = Table(
        title="timeline",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        header_style="bold",
        pad_edge=False,
    )
    table.add_column("#", justify="right")
    table.add_column("step", overflow="fold")
    table.add_column("attempt", justify="right")
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("duration", justify="right")
    table.add_column("outcome")
    table.add_column("error", overflow="fold")
    for i, span in enumerate(d.timeline, 1):
        error = f"{span.error.type}: {span.error.message}" if span.error else ""
        table.add_row(
            str(i),
            Text(span.step),
            str(span.attempt),
            fmt_time(span.started_at),
            fmt_duration(span.duration),
            _status(span.outcome) if span.outcome != "errored" else Text("errored", "red"),
            Text(error),
        )
    if d.timeline:
        out.print(table)
    else:
        out.print("timeline: no step has started yet")
    if d.signals:
        out.print(
            "signals: "
            + ", ".join(f"{sig.name} ({fmt_time(sig.created_at)})" for sig in d.signals),
            highlight=False,
        )


# -- actions ----------------------------------------------------------------------------


def _action_command(action: Action) -> click.Command:
    statuses = ", ".join(action.statuses)
    extra = (
        "\n\nWith --from-step NAME (one KEY only), the run continues at that step of its job, "
        "and a failed run can be resumed too."
        if action.name == "resume"
        else ""
    )

    @click.command(
        name=action.name,
        help=f"{action.name.capitalize()} the run KEY, or every run the filters select "
        f"(only {statuses} runs), asking first unless --yes.{extra}",
    )
    @click.argument("key", required=False)
    @database_url_option()
    @app_option()
    @filter_options
    @click.option("--all", "all_runs", is_flag=True, help="select every run (no filter)")
    @click.option("--yes", "-y", is_flag=True, help="do not ask before acting on several runs")
    @json_option
    def command(
        key: str | None,
        database_url: str | None,
        app_path: str | None,
        statuses: tuple[str, ...],
        jobs: tuple[str, ...],
        queues: tuple[str, ...],
        key_prefix: str | None,
        since: str | None,
        all_runs: bool,
        yes: bool,
        as_json: bool,
        from_step: str | None = None,
    ) -> None:
        flt = make_filter(statuses, jobs, queues, key_prefix, since)
        if key is not None:
            if not flt.empty or all_runs:
                raise click.UsageError("give a KEY or filters (or --all), not both")
            with opened(database_url, app_path) as app:
                _act_on_one(app, action, key, from_step, as_json)
            return
        if from_step is not None:
            raise click.UsageError("--from-step needs one KEY: steps differ between jobs")
        if flt.empty and not all_runs:
            raise click.UsageError(
                f"give a KEY, filters (--status, --job, --queue, --key-prefix, --since) "
                f"or --all to {action.name} every {statuses} run"
            )
        with opened(database_url, app_path) as app:
            _act_in_bulk(app, action, flt, yes=yes, as_json=as_json)

    if action.name == "resume":
        command = click.option(
            "--from-step",
            metavar="NAME",
            default=None,
            help="continue at this step of the job (moves the recovery point)",
        )(command)
    return command


def _act(app: App, action: Action, key: str, from_step: str | None) -> Any:
    if action.name == "retry":
        return app.retry(key)
    if action.name == "resume":
        return app.resume(key, from_step=from_step)
    return app.cancel(key)


def _act_on_one(app: App, action: Action, key: str, from_step: str | None, as_json: bool) -> None:
    admin = Admin(app)
    before = admin.summary(key)
    if before is None:
        raise CLINotFoundError(f"no run has the key {key!r}")
    allowed = action.statuses
    if from_step is not None:
        allowed = (*allowed, RunStatus.FAILED.value)
    if before.status not in allowed:
        raise CLIRefusedError(
            f"cannot {action.name} key {key!r}: it is {before.status}; "
            f"{action.name} applies to {', '.join(allowed)} runs"
        )
    try:
        run = _act(app, action, key, from_step)
    except UnknownRecoveryPointError as exc:
        raise CLIUsageError(str(exc)) from exc
    except UnknownKeyError as exc:
        raise CLINotFoundError(str(exc)) from exc
    if as_json:
        after = admin.summary(key)
        _emit_json({"action": action.name, "key": key, "run": after and after.to_json()})
        return
    if action.name == "cancel" and run.status == RunStatus.RUNNING:
        click.echo(
            f"cancel requested for key {key!r}: it is running and stops at its next step "
            "boundary (that step is not committed)"
        )
        return
    where = f" from step {from_step}" if from_step else ""
    click.echo(f"{action.done} key {key!r}{where}: now {run.status}")


def _act_in_bulk(app: App, action: Action, flt: RunFilter, *, yes: bool, as_json: bool) -> None:
    narrowed = flt.narrowed(action.statuses)
    if narrowed is None:
        raise click.UsageError(
            f"{action.name} applies to {', '.join(action.statuses)} runs only; "
            f"--status asked for {', '.join(flt.statuses)}"
        )
    admin = Admin(app)
    keys = admin.keys(narrowed)
    if not keys:
        if as_json:
            _emit_json({"action": action.name, "matched": 0, "done": [], "left": []})
        else:
            click.echo(f"no runs to {action.name} ({narrowed.describe()})")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise CLIUsageError(
                f"{len(keys)} run(s) match ({narrowed.describe()}); pass --yes to "
                f"{action.name} them without a prompt"
            )
        click.confirm(
            f"{action.name.capitalize()} {len(keys)} run(s) ({narrowed.describe()})?",
            abort=True,
        )
    done: list[str] = []
    left: list[dict[str, str]] = []
    err = Console(stderr=True)
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task(f"{action.name}", total=len(keys))
        for key in keys:
            try:
                _act(app, action, key, None)
            except AcidicError as exc:
                if type(exc) not in (AcidicError, UnknownKeyError):
                    raise  # a database problem: stop, and say so
                # Its status changed since it was selected (or it was pruned).
                left.append({"key": key, "reason": str(exc)})
            else:
                done.append(key)
            progress.advance(task)
    if as_json:
        _emit_json({"action": action.name, "matched": len(keys), "done": done, "left": left})
    else:
        click.echo(f"{action.done} {len(done)} of {len(keys)} run(s) ({narrowed.describe()})")
        for item in left:
            click.echo(f"left as it was: {item['key']!r}: {item['reason']}", err=True)
    if left:
        sys.exit(EXIT_REFUSED)


for _action in ACTIONS.values():
    runs.add_command(_action_command(_action))
