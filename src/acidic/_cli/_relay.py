"""``acidic relay``: republish the runs of an App's executor whose message was lost."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import click

from .._errors import AcidicError
from ._options import traceback_option
from ._root import CLIError
from ._worker import load_app

__all__ = ["relay"]


@click.command()
@click.option(
    "--app", "app_path", required=True, metavar="MODULE:ATTR", help="the acidic.App to relay for"
)
@click.option("--once", is_flag=True, help="one pass, then exit")
@click.option(
    "--interval",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="seconds between passes",
)
@click.option("--log-level", default="INFO", show_default=True, help="logging level")
@traceback_option
def relay(app_path: str, once: bool, interval: float, log_level: str, show_traceback: bool) -> None:
    """Republish the runs of the App's executor (Celery, RQ, Dramatiq) that are due but
    not in flight: pending or scheduled runs due for longer than the executor's grace,
    running runs whose owner's lock expired (a crash between the commit and the publish,
    a message lost by the broker, a queue worker killed mid-step).

    Runs until SIGTERM or Ctrl-C (exit 0); --once does a single pass and prints how
    many runs it republished. Several relays at once publish each run once.
    """
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    app = load_app(app_path, show_traceback)
    executor = app.executor
    if executor is None:
        raise CLIError(
            f"{app_path} has no executor: acidic's own worker needs no relay "
            "(App(url, executor=CeleryExecutor(...)) hands runs to a queue)"
        )
    try:
        app.manager.check_schema()
        if once:
            count = executor.relay()
            click.echo(f"republished {count} run(s) to {executor.name}")
            return
        signals: list[int] = []

        def handle(signum: int, _frame: FrameType | None) -> None:
            signals.append(signum)  # no lock taken in a handler

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        logging.getLogger("acidic.executor").info(
            "relay started for %s every %.1f s", executor.name, interval
        )
        executor.relay_forever(interval=interval, stopped=lambda: bool(signals))
    except AcidicError as exc:
        raise CLIError(str(exc)) from exc
    finally:
        app.close()
