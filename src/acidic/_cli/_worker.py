"""``acidic worker``: run a worker process for an App named by ``module:attribute``."""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback

import click
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

from .._app import App
from .._errors import AcidicError
from .._imports import TargetImportError, import_target
from .._worker._supervisor import Supervisor, obey_supervisor
from .._worker._worker import Worker
from ._options import traceback_option
from ._root import CLIError, CLIUsageError
from ._telemetry import json_logging, metrics_options, start_metrics

__all__ = ["load_app", "worker"]


def load_app(target: str, show_traceback: bool | None = None) -> App:
    """The App at ``module:attribute`` (the current directory is importable).

    If the module raises while it is imported, the error is one line naming where it
    was raised; ``show_traceback`` prints the whole traceback first (None: the command
    has no ``--traceback`` option to suggest)."""
    try:
        app = import_target(target, "--app")
    except TargetImportError as exc:
        if show_traceback:
            traceback.print_exception(exc.__cause__ or exc, file=sys.stderr)
            raise CLIError(str(exc)) from exc
        hint = "" if show_traceback is None else "; --traceback shows the whole traceback"
        raise CLIError(f"{exc}{hint}") from exc
    except AcidicError as exc:
        raise CLIError(f"{exc} (e.g. --app myproject.jobs:app)") from exc
    if not isinstance(app, App):
        raise CLIError(f"{target} is not an acidic.App (found {type(app).__name__})")
    return app


def _summary(runner: Worker) -> Table:
    table = Table(title="acidic worker", show_header=True, header_style="bold")
    table.add_column("queues")
    table.add_column("running", justify="right")
    table.add_column("done", justify="right")
    table.add_column("outcomes")
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(runner.outcomes.items())) or "-"
    table.add_row(
        ",".join(runner.queues),
        f"{runner.running}/{runner.concurrency}",
        str(runner.processed),
        outcomes,
    )
    return table


def _run_with_summary(runner: Worker, console: Console) -> int:
    """On a terminal: a live summary below the log lines, refreshed twice a second."""
    done = threading.Event()
    with Live(_summary(runner), console=console, refresh_per_second=2) as live:

        def refresh() -> None:
            while not done.wait(0.5):
                live.update(_summary(runner))

        thread = threading.Thread(target=refresh, name="acidic-summary", daemon=True)
        thread.start()
        try:
            return runner.run()
        finally:
            done.set()
            live.update(_summary(runner))


@click.command()
@click.option(
    "--app", "app_path", required=True, metavar="MODULE:ATTR", help="the acidic.App to serve"
)
@click.option(
    "--queues",
    default=None,
    metavar="A,B",
    help="comma-separated queues to serve [default: all the App declares]",
)
@click.option(
    "--concurrency",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="runs executed at once",
)
@click.option(
    "--poll-interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="seconds between polls where LISTEN/NOTIFY is not available",
)
@click.option(
    "--grace",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="seconds a graceful stop (SIGTERM, Ctrl-C) may take",
)
@click.option(
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="worker processes, each with --concurrency executors, under one supervisor",
)
@click.option("--log-level", default="INFO", show_default=True, help="logging level")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line, with the run's key, job, step and attempt",
)
@metrics_options
@traceback_option
@click.option("--supervised", is_flag=True, hidden=True)
def worker(
    app_path: str,
    queues: str | None,
    concurrency: int,
    poll_interval: float,
    grace: float,
    processes: int,
    log_level: str,
    log_format: str,
    metrics_port: int | None,
    metrics_host: str,
    show_traceback: bool,
    supervised: bool,
) -> None:
    """Execute enqueued runs until stopped.

    SIGTERM or Ctrl-C stops gracefully: no new runs are claimed, each running run
    stops at its next step boundary and is handed back (without using up an attempt),
    and the worker exits 0. A second signal, or the grace period running out, stops
    at once with exit code 1; runs it held are taken over after their lock timeout.

    With --processes N, N worker processes run under this one, which restarts any
    that dies and passes a stop on to all of them; the exit code is 0 when every one
    stopped gracefully.
    """
    console = Console(stderr=True)
    if metrics_port is not None and processes > 1:
        raise CLIUsageError(
            "--metrics-port serves one process: with --processes N, run N workers, "
            "each with its own --metrics-port"
        )
    if log_format == "json":
        json_logging(log_level)
    elif supervised or processes > 1:
        # Several processes write to one stream: plain lines, each with its pid.
        logging.basicConfig(
            level=log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s",
            stream=sys.stderr,
        )
    elif sys.stderr.isatty():
        # Log lines print above the live summary instead of tearing it.
        handler: logging.Handler = RichHandler(console=console, show_path=False)
        logging.basicConfig(
            level=log_level.upper(), format="%(name)s %(message)s", handlers=[handler]
        )
    else:
        logging.basicConfig(
            level=log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
            stream=sys.stderr,
        )
    app = load_app(app_path, show_traceback)
    start_metrics(metrics_port, metrics_host)
    chosen = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    runner = app.worker(
        queues=chosen, concurrency=concurrency, poll_interval=poll_interval, grace=grace
    )
    if processes > 1:
        # Refuse here, once, what every child would refuse (an unmigrated database):
        # not N crash-looping processes.
        app.manager.check_schema()
        app.close()
        argv = [sys.executable, "-m", "acidic", "worker", "--app", app_path]
        argv += ["--concurrency", str(concurrency), "--poll-interval", repr(poll_interval)]
        argv += ["--grace", repr(grace), "--log-level", log_level, "--supervised"]
        argv += ["--log-format", log_format]
        if queues:
            argv += ["--queues", queues]
        sys.exit(Supervisor(argv, processes, grace).run())
    if supervised:
        obey_supervisor(runner.stop)
        code = runner.run(install_signal_handlers=False)
    elif sys.stderr.isatty() and log_format == "text":
        code = _run_with_summary(runner, console)
    else:
        code = runner.run()
    if code != 0:
        # Forced stop: steps still running in executor threads must not keep the
        # process alive; their runs are taken over once their locks expire.
        logging.shutdown()
        os._exit(code)
    sys.exit(code)
