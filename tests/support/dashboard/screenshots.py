"""Take the dashboard screenshots of docs/screenshots/ (run by ``scripts/screenshots``).

Seeds a fresh SQLite database with runs of :mod:`tests.support.dashboard.ops_app` (spread
over the last hour, so the charts have something to show), starts the real
``acidic dashboard`` and ``acidic worker``, and photographs the overview, the runs
list, two run pages, the jobs statistics, the schedule, a bulk retry's confirmation, the
workers and the queues with headless Chromium.

Everything that executes jobs (the seeding and the worker) runs in a neutral folder,
``/tmp/acidic-demo``: the database is there, the jobs are a copy of ``ops_app`` named
``jobs.py`` there, and acidic is imported from a copy in ``lib/`` there. A stored
traceback, which the failed run's page shows, then names files under that folder and
no path of the machine that made the pictures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FOLDER = Path(tempfile.gettempdir()) / "acidic-demo"
#: Written in the folder this script creates, so that it never deletes a folder of someone else's.
MARKER = ".acidic-screenshots"
URL = "sqlite:///acidic.sqlite3"  # relative: the folder is the processes' working directory


def _prepare(folder: Path) -> dict[str, str]:
    """A fresh folder with acidic and the jobs copied in; the children's environment."""
    if folder.exists():
        if not (folder / MARKER).exists():
            raise SystemExit(f"{folder} exists and was not made by this script: remove it")
        shutil.rmtree(folder)
    (folder / "lib").mkdir(parents=True)
    (folder / MARKER).touch()
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "src" / "acidic", folder / "lib" / "acidic", ignore=ignore)
    shutil.copy(ROOT / "tests" / "support" / "dashboard" / "ops_app.py", folder / "jobs.py")
    env = dict(os.environ)
    env.pop("ACIDIC_DASHBOARD_TOKEN", None)
    env["ACIDIC_DATABASE_URL"] = URL
    env["PYTHONPATH"] = os.pathsep.join([str(folder / "lib"), str(folder)])
    return env


def seed() -> None:
    """Run in the folder (``--seed``): runs over the last hour, some of them failed."""
    import jobs  # type: ignore[import-not-found]  # the folder's copy of ops_app
    import sqlalchemy as sa

    from acidic._storage._schema import history, runs

    app = jobs.app
    app.migrate()
    rng = random.Random(7)
    for i in range(40):
        app.run(jobs.Ride(user_id=i, card=f"4242-{i:04d}"), key=f"ride-{1000 + i}")
    for i in range(9):
        with contextlib.suppress(ValueError):
            app.run(jobs.Flaky(n=i), key=f"invoice-sync-{200 + i}")
    for i in range(3):
        app.run(jobs.Parked(n=i), key=f"approval-{30 + i}")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    for i in range(4):
        app.enqueue(
            jobs.Ride(user_id=500 + i, card="4242-9999"),
            key=f"ride-later-{i}",
            queue="mail",
            run_at=later,
            priority=i,
        )
    # Spread the finished runs over the last hour (this database is only a picture).
    with app.engine.begin() as conn:
        cols = (runs.c.id, runs.c.created_at, runs.c.last_run_at, runs.c.finished_at)
        rows = conn.execute(sa.select(*cols).where(runs.c.queue.is_(None))).all()
        for run_id, created, claimed, finished in rows:
            shift = dt.timedelta(minutes=rng.uniform(1, 58))
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(
                    created_at=created - shift,
                    last_run_at=claimed and claimed - shift,
                    finished_at=finished and finished - shift,
                )
            )
            events = conn.execute(
                sa.select(history.c.id, history.c.at).where(history.c.run_id == run_id)
            ).all()
            for event_id, at in events:
                conn.execute(history.update().where(history.c.id == event_id).values(at=at - shift))


@contextlib.contextmanager
def _process(folder: Path, env: dict[str, str], *args: str) -> Iterator[None]:
    """``python -m acidic ARGS`` in the folder, with the folder's acidic and jobs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "acidic", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--folder", type=Path, default=FOLDER, help="default: %(default)s")
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.seed:
        seed()
        return
    from playwright.sync_api import sync_playwright

    from tests.support.dashboard import ops_app
    from tests.support.dashboard.helpers import CHROMIUM, free_port, wait_for, wait_status

    options.out.mkdir(parents=True, exist_ok=True)
    folder = options.folder.resolve()
    env = _prepare(folder)
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--seed"], cwd=folder, env=env, check=True
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker = ("worker", "--app", "jobs:app", "--poll-interval", "0.1", "--log-level", "WARNING")
    dashboard = ("dashboard", "--app", "jobs:app", "--port", str(port), "--refresh", "0")
    with (
        ops_app.make_app(f"sqlite:///{folder / 'acidic.sqlite3'}") as app,
        _process(folder, env, *worker),
        _process(folder, env, *dashboard),
    ):
        app.enqueue(ops_app.Flaky(n=99), key="invoice-sync-299")
        wait_status(app, "invoice-sync-299", "failed")
        for i in range(6):
            app.enqueue(ops_app.Ride(user_id=900 + i, card="4242-1111"), key=f"ride-q{i}")
        wait_status(app, "ride-q5", "succeeded")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def up() -> bool | None:
                with contextlib.suppress(Exception):
                    return page.goto(base + "/static/dashboard.css") is not None
                return None

            wait_for("the dashboard to listen", up)
            shots = [
                ("overview.png", "/"),
                ("runs.png", "/runs"),
                ("run-failed.png", "/run?key=invoice-sync-299"),
                ("run-succeeded.png", "/run?key=ride-1003"),
                ("jobs.png", "/jobs?window=1h"),
                ("scheduled.png", "/scheduled"),
                ("bulk-retry.png", "/runs/bulk?action=retry&status=failed"),
                ("workers.png", "/workers"),
                ("queues.png", "/queues"),
            ]
            for name, path in shots:
                page.goto(base + path)
                page.screenshot(path=str(options.out / name), full_page=name != "runs.png")
                print(f"wrote {options.out / name}")
            browser.close()
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
