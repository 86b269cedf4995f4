"""``acidic prune`` and ``acidic stats``: housekeeping and a health check from the terminal."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._admin import Admin, Stats, parse_duration
from .._run import RunStatus
from ._options import STATUS_STYLE, app_option, console, json_option, opened
from ._root import database_url_option

__all__ = ["prune", "stats"]

_BARS = " ▁▂▃▄▅▆▇█"


def _duration(param: str, text: str) -> float:
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None
    return seconds


@click.command()
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="AGE",
    help="prune runs finished more than AGE ago: seconds or 30m, 12h, 7d, 2w",
)
@click.option("--dry-run", is_flag=True, help="only count the runs that would be deleted")
@database_url_option()
@app_option("the acidic.App (its database is used) [default: --database-url]")
@json_option
def prune(
    older_than: str,
    dry_run: bool,
    database_url: str | None,
    app_path: str | None,
    as_json: bool,
) -> None:
    """Delete succeeded and cancelled runs that finished more than AGE ago.

    Their history and signals go with them, 1,000 runs per transaction. Pending,
    running, halted, scheduled and failed runs are never pruned. Once pruned, a key
    is free: using it again starts a new run.
    """
    seconds = _duration("--older-than", older_than)
    with opened(database_url, app_path) as app:
        if dry_run:
            count = Admin(app).prunable(dt.timedelta(seconds=seconds))
        else:
            err = Console(stderr=True)
            with err.status("pruning…") if err.is_terminal else contextlib.nullcontext():
                count = app.prune(seconds)
    if as_json:
        click.echo(json.dumps({"pruned": 0 if dry_run else count, "would_prune": count}))
        return
    verb = "would prune" if dry_run else "pruned"
    click.echo(
        f"{verb} {count} run(s) (succeeded or cancelled, finished more than {older_than} ago)"
    )


def _spark(values: list[int]) -> str:
    top = max(values, default=0)
    if top == 0:
        return _BARS[1] * len(values)
    return "".join(_BARS[1 + round(v / top * (len(_BARS) - 2))] if v else _BARS[1] for v in values)


@click.command()
@database_url_option()
@app_option("the acidic.App (its database is used) [default: --database-url]")
@click.option(
    "--window",
    default="1h",
    show_default=True,
    metavar="AGE",
    help="the period of throughput and failure rate: 15m, 1h, 24h, 7d",
)
@json_option
def stats(database_url: str | None, app_path: str | None, window: str, as_json: bool) -> None:
    """Counts of runs by status and queue; throughput and failure rate over the window.

    Throughput counts the runs that succeeded in the window; the failure rate is the
    step errors recorded in the window (each failed attempt, retried or not) divided
    by those successes plus errors.
    """
    seconds = _duration("--window", window)
    if seconds <= 0:
        raise click.BadParameter("the window must be longer than 0", param_hint="--window")
    with opened(database_url, app_path) as app:
        result = Admin(app).stats(dt.timedelta(seconds=seconds), buckets=12)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    _print_stats(console(), result, window)


def _print_stats(out: Console, s: Stats, window: str) -> None:
    statuses = [st.value for st in RunStatus]
    table = Table(
        title="runs by queue and status",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        header_style="bold",
        pad_edge=False,
    )
    table.add_column("queue")
    for st in statuses:
        table.add_column(Text(st, style=STATUS_STYLE[st]), justify="right")
    table.add_column("total", justify="right")
    for queue, counts in s.by_queue.items():
        table.add_row(
            Text(queue or "(inline)"),
            *[str(counts.get(st, 0)) for st in statuses],
            str(sum(counts.values())),
        )
    table.add_row(
        Text("all", style="bold"),
        *[str(s.by_status.get(st, 0)) for st in statuses],
        str(s.total),
        style="bold",
    )
    out.print(table)
    rate = "-" if s.failure_rate is None else f"{s.failure_rate:.1%}"
    activity = Table.grid(padding=(0, 2))
    activity.add_column(style="bold")
    activity.add_column()
    activity.add_row(f"last {window}", "")
    done = _spark([b.succeeded for b in s.buckets])
    activity.add_row("succeeded", f"{s.succeeded} ({s.throughput_per_minute:.2f}/min)  {done}")
    activity.add_row("errors", f"{s.errors}  {_spark([b.errors for b in s.buckets])}")
    activity.add_row("failure rate", rate)
    out.print(activity)
