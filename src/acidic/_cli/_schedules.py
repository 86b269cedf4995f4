"""``acidic schedules``: the App's schedules with their last and next tick."""

from __future__ import annotations

import json

import click
from rich import box
from rich.table import Table
from rich.text import Text

from .._admin import describe_schedules
from ._options import STATUS_STYLE, console, json_option, opened, traceback_option

__all__ = ["schedules"]


@click.command()
@click.option(
    "--app",
    "app_path",
    metavar="MODULE:ATTR",
    required=True,
    help="the acidic.App whose schedules to list (schedules are registered in code)",
)
@traceback_option
@json_option
def schedules(app_path: str, show_traceback: bool, as_json: bool) -> None:
    """List the App's schedules: recurrence, last tick and its run, next tick.

    Each tick of a schedule is the run of the key schedule:NAME:TICK (TICK in ISO 8601
    UTC); workers create them. A last tick with no run means no worker was running
    when it fell due.
    """
    with opened(None, app_path, show_traceback) as app:
        rows = describe_schedules(app)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for column in ("name", "job", "recurrence", "queue", "last tick", "run", "next tick"):
        table.add_column(column)
    for row in rows:
        recurrence = row["cron"] or f"every {row['every_s']}s"
        if row["cron"] and row["timezone"] != "UTC":
            recurrence += f" ({row['timezone']})"
        status = row["last_status"]
        table.add_row(
            row["name"],
            row["job"],
            recurrence,
            row["queue"],
            row["last_tick"] or "-",
            Text(status or "not enqueued", style=STATUS_STYLE.get(status or "", "dim")),
            row["next_tick"],
        )
    out = console()
    if not rows:
        out.print("no schedules registered (app.schedule(...))")
        return
    out.print(table)
