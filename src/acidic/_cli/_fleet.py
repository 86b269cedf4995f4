"""``acidic queues`` and ``acidic workers``: the fleet from the terminal.

``acidic queues`` lists the queues (depth, due now, running, the age of the oldest due
run, paused); ``acidic queues pause NAME`` / ``resume NAME`` stop and restart claims
from a queue. ``acidic workers`` lists the registered worker processes and the runs
they hold. Reading goes through :class:`acidic._admin.Admin`; ``--json`` for scripts.
"""

from __future__ import annotations

import click
from rich import box
from rich.table import Table
from rich.text import Text

from .._admin import Admin, QueueInfo, WorkerInfo, fmt_duration, fmt_time
from ._options import app_option, console, emit_json, json_option, opened
from ._root import database_url_option

__all__ = ["queues", "workers"]


@click.group(invoke_without_command=True)
@database_url_option()
@app_option("the acidic.App (its database and declared queues are used)")
@json_option
@click.pass_context
def queues(
    ctx: click.Context, database_url: str | None, app_path: str | None, as_json: bool
) -> None:
    """List the queues, or pause and resume one.

    \b
    depth: waiting runs (pending or scheduled); due: waiting runs due now;
    oldest due: how long the oldest due run has waited (the latency a new
    run sees); paused: workers claim nothing from it (enqueueing still works).

    \b
    Examples:
      acidic queues --json
      acidic queues pause emails
      acidic queues resume emails
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = (database_url, app_path)  # `acidic queues --database-url U pause Q`
        return
    with opened(database_url, app_path) as app:
        found = Admin(app).queues()
    if as_json:
        emit_json([q.to_json() for q in found])
        return
    console().print(_queues_table(found))


def _queues_table(found: list[QueueInfo]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    table.add_column("queue", overflow="fold")
    for name in ("depth", "due", "running", "oldest due", "workers"):
        table.add_column(name, justify="right")
    table.add_column("paused")
    for q in found:
        table.add_row(
            Text(q.name),
            str(q.depth),
            str(q.due),
            str(q.running),
            fmt_duration(q.oldest_due_age_s),
            str(q.workers),
            Text(f"paused since {fmt_time(q.paused_at)}", "yellow") if q.paused else Text("no"),
        )
    return table


def _pause_command(pause: bool) -> click.Command:
    verb = "pause" if pause else "resume"

    @click.command(name=verb)
    @click.argument("name")
    @database_url_option()
    @app_option("the acidic.App (its database is used)")
    @json_option
    @click.pass_context
    def command(
        ctx: click.Context,
        name: str,
        database_url: str | None,
        app_path: str | None,
        as_json: bool,
    ) -> None:
        if database_url is None and app_path is None and isinstance(ctx.obj, tuple):
            database_url, app_path = ctx.obj
        with opened(database_url, app_path) as app:
            changed = app.pause_queue(name) if pause else app.resume_queue(name)
        if as_json:
            emit_json({"queue": name, "paused": pause, "changed": changed})
            return
        if pause:
            click.echo(
                f"queue {name!r} paused: workers claim nothing from it within a second "
                "(enqueueing still works)"
                if changed
                else f"queue {name!r} was already paused"
            )
        else:
            click.echo(
                f"queue {name!r} resumed: workers claim from it again"
                if changed
                else f"queue {name!r} was not paused"
            )

    command.help = (
        "Stop workers claiming from queue NAME (runs already running go on; "
        "enqueueing still works)."
        if pause
        else "Let workers claim from queue NAME again."
    )
    return command


queues.add_command(_pause_command(True))
queues.add_command(_pause_command(False))


@click.command()
@database_url_option()
@app_option("the acidic.App (its database is used)")
@json_option
def workers(database_url: str | None, app_path: str | None, as_json: bool) -> None:
    """List the worker processes: live ones, then gone ones (missed heartbeats).

    Each worker process (each child under --processes) registers itself at start,
    renews its heartbeat every 1 to 5 s and is removed on a graceful stop; one that
    misses 3 heartbeats is shown as gone (its runs as orphaned), and is forgotten an
    hour later.
    """
    with opened(database_url, app_path) as app:
        found = Admin(app).workers()
    if as_json:
        emit_json([w.to_json() for w in found])
        return
    out = console()
    if not found:
        out.print("no worker is registered")
        return
    out.print(_workers_table(found))


def _workers_table(found: list[WorkerInfo]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    table.add_column("worker", overflow="fold")
    table.add_column("state")
    table.add_column("queues", overflow="fold")
    table.add_column("concurrency", justify="right")
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("heartbeat (UTC)", no_wrap=True)
    table.add_column("runs", overflow="fold")
    for w in found:
        held = ", ".join(w.runs[:5]) + (f" (+{len(w.runs) - 5})" if len(w.runs) > 5 else "")
        table.add_row(
            Text(w.id),
            Text("live", "green") if w.live else Text("gone", "bold red"),
            Text(",".join(w.queues)),
            str(w.concurrency),
            fmt_time(w.started_at),
            fmt_time(w.heartbeat_at),
            Text(held or "-"),
        )
    return table
