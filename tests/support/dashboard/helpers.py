"""Helpers for the dashboard tests and ``scripts/screenshots``: seed runs, start the
real ``acidic dashboard`` and ``acidic worker`` processes, wait for them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import acidic
from tests.support.dashboard import ops_app

ROOT = Path(__file__).resolve().parents[3]
ACIDIC = Path(sys.executable).with_name("acidic")
APP = "tests.support.dashboard.ops_app:app"
CHROMIUM = "/usr/bin/chromium"

T = TypeVar("T")


def seed(app: acidic.App) -> None:
    """Three rides that succeeded, two flaky runs that failed, a halted run, a pending one."""
    for i in range(3):
        app.run(ops_app.Ride(user_id=i, card=f"4242-secret-{i}"), key=f"ride-{i}")
    for i in range(2):
        with contextlib.suppress(ValueError):
            app.run(ops_app.Flaky(n=i), key=f"flaky-{i}")
    app.run(ops_app.Parked(n=1), key="parked-1")
    app.enqueue(ops_app.Ride(user_id=9, card="4242-queued"), key="queued-ride", queue="mail")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 20.0) -> T:
    """Poll ``check`` until it returns something other than None (or fail after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ACIDIC_DATABASE_URL"] = url
    env.pop("ACIDIC_DASHBOARD_TOKEN", None)
    return env


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def dashboard(url: str, *args: str, refresh: float = 0.5) -> Iterator[str]:
    """Run ``acidic dashboard --app ops_app`` on a free port; yield its base URL."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [
                str(ACIDIC),
                "dashboard",
                "--app",
                APP,
                "--port",
                str(port),
                "--refresh",
                str(refresh),
                *args,
            ],
            cwd=ROOT,
            env=_env(url),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"

        def up() -> bool | None:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"acidic dashboard exited {proc.returncode}: {log.read()}")
            try:
                with urllib.request.urlopen(f"{base}/static/dashboard.css", timeout=1):
                    return True
            except (urllib.error.URLError, ConnectionError):
                return None

        try:
            wait_for("the dashboard to listen", up)
            yield base
        finally:
            _stop(proc)


@contextlib.contextmanager
def worker(url: str) -> Iterator[subprocess.Popen[str]]:
    """Run ``acidic worker --app ops_app``, polling often."""
    proc = subprocess.Popen(
        [str(ACIDIC), "worker", "--app", APP, "--poll-interval", "0.1", "--log-level", "WARNING"],
        cwd=ROOT,
        env=_env(url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield proc
    finally:
        _stop(proc)


def status_of(app: acidic.App, key: str) -> str:
    run = app.get(key)
    assert run is not None, key
    return str(run.status)


def wait_status(app: acidic.App, key: str, status: str, timeout: float = 20.0) -> None:
    wait_for(
        f"{key} to be {status}", lambda: True if status_of(app, key) == status else None, timeout
    )


def copy_run(app: acidic.App, template: str, keys: list[str], **changes: object) -> None:
    """Store a copy of the run ``template`` under each of ``keys`` (arguments, context,
    status and error as they are, ``changes`` applied), in one statement: thousands of
    failed runs in a second, where failing each for real would take minutes."""
    import sqlalchemy as sa

    from acidic._storage._schema import runs

    with app.engine.begin() as conn:
        row = conn.execute(sa.select(runs).where(runs.c.idempotency_key == template)).one()
        base = {k: v for k, v in row._mapping.items() if k != "id"}
        conn.execute(runs.insert(), [{**base, **changes, "idempotency_key": k} for k in keys])
