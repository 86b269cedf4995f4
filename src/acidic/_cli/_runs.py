"""``acidic runs``: list, show, retry, resume and cancel runs from the terminal.

Reading goes through :class:`acidic._admin.Admin`; the actions (in :mod:`._actions`)
through the App. Output is a rich table on a terminal and JSON with ``--json``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .._admin import Admin, RunDetail, RunSummary, fmt_duration, fmt_time
from .._run import RunStatus
from ._actions import VERBS, action_command
from ._options import (
    app_option,
    console,
    emit_json,
    filter_options,
    json_option,
    make_filter,
    opened,
    status_text,
)
from ._root import CLINotFoundError, database_url_option

__all__ = ["runs"]


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
@click.option("--due", is_flag=True, help="only waiting runs that are due now")
@click.option(
    "--orphaned",
    is_flag=True,
    help="only running runs whose worker stopped heartbeating or whose lock expired",
)
@click.option(
    "--unknown-job",
    "unknown_job",
    is_flag=True,
    help="only due runs of a job that no live worker knows on their queue",
)
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
    due: bool,
    orphaned: bool,
    unknown_job: bool,
    as_json: bool,
) -> None:
    """List runs, newest first.

    \b
    Examples:
      acidic runs list --status failed --since 1h
      acidic runs list --job billing.charge --queue default --json
      acidic runs list --orphaned
      acidic runs list --unknown-job
    """
    flt = dataclasses.replace(
        make_filter(statuses, jobs, queues, key_prefix, since),
        due=due,
        orphaned=orphaned,
        unknown_job=unknown_job,
    )
    if cursor is not None and not cursor.isdigit():
        raise click.BadParameter(
            f"{cursor!r} is not a cursor printed by acidic runs list", param_hint="--cursor"
        )
    with opened(database_url, app_path) as app:
        admin = Admin(app)
        page = admin.list_runs(flt, limit=limit, cursor=cursor)
        total = admin.count_runs(flt)
    if as_json:
        emit_json(
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
    table.add_column("due (UTC)", no_wrap=True)
    table.add_column("updated (UTC)", no_wrap=True)
    table.add_column("error / warning", overflow="fold")
    for r in rows:
        attempts = f"{r.attempts}/{r.max_attempts}" if r.max_attempts else str(r.attempts)
        error = f"{r.error.type.rsplit('.', 1)[-1]}: {r.error.message}" if r.error else ""
        status = status_text(r.status)
        if r.orphaned:
            status.append(" (orphaned)", style="bold red")
        note = Text(error if len(error) <= 60 else error[:59] + "…")
        if r.warning and not r.orphaned:
            note = Text(r.warning, style="yellow")
        elif r.orphaned:
            note = Text(f"takeover at {fmt_time(r.takeover_at)}", style="yellow")
        due = Text("-")
        if r.run_at is not None:
            due = Text(fmt_time(r.run_at) + (" (due)" if r.due else ""))
        table.add_row(
            Text(r.key),
            Text(r.job),
            status,
            Text(r.queue or "(inline)"),
            attempts,
            Text(r.recovery_point or "-"),
            due,
            fmt_time(r.updated_at),
            # Short: the whole error is in `acidic runs show`.
            note,
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
        emit_json(detail.to_json())
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
    head.add_row("status", status_text(s.status))
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
    _fleet_rows(head, s)
    head.add_row("steps", Text(" → ".join(d.steps)))
    out.print(Panel(head, title="run", title_align="left", expand=False))
    _print_rest(out, d)


def _fleet_rows(head: Table, s: RunSummary) -> None:
    """The lock, its owner and why the run waits or is stuck."""
    if s.locked_at is not None:
        head.add_row("locked (heartbeat)", fmt_time(s.locked_at))
    if s.lock_expires_at is not None:
        head.add_row("lock expires", fmt_time(s.lock_expires_at))
    if s.status == RunStatus.RUNNING:
        head.add_row("owner", Text(s.owner or "(inline: app.run)"))
        if s.owner_heartbeat_at is not None:
            head.add_row("owner heartbeat", fmt_time(s.owner_heartbeat_at))
    if s.orphaned:
        head.add_row("orphaned", Text(f"yes: taken over at {fmt_time(s.takeover_at)}", "red"))
    if s.reason:
        head.add_row("why", Text(s.reason))
    if s.warning and s.warning != s.reason:
        head.add_row("warning", Text(s.warning, style="yellow"))


def _print_rest(out: Console, d: RunDetail) -> None:
    s = d.summary

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
            status_text(span.outcome) if span.outcome != "errored" else Text("errored", "red"),
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


for _verb in VERBS:
    runs.add_command(action_command(_verb))
