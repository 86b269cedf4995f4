"""Take the dashboard screenshots of docs/screenshots/ (run by ``scripts/screenshots``).

Seeds a fresh SQLite database with runs of :mod:`tests.support.dashboard.ops_app` (spread
over the last hour, so the charts have something to show), starts the real
``acidic dashboard`` and ``acidic worker``, and photographs the overview, the runs
list and two run pages with headless Chromium.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import random
import tempfile
from pathlib import Path

import sqlalchemy as sa
from playwright.sync_api import sync_playwright

import acidic
from acidic._storage._schema import history, runs
from tests.support.dashboard import ops_app
from tests.support.dashboard.helpers import CHROMIUM, ROOT, dashboard, wait_status, worker


def _seed(app: acidic.App) -> None:
    rng = random.Random(7)
    for i in range(40):
        app.run(ops_app.Ride(user_id=i, card=f"4242-{i:04d}"), key=f"ride-{1000 + i}")
    for i in range(9):
        with contextlib.suppress(ValueError):
            app.run(ops_app.Flaky(n=i), key=f"invoice-sync-{200 + i}")
    for i in range(3):
        app.run(ops_app.Parked(n=i), key=f"approval-{30 + i}")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    for i in range(4):
        app.enqueue(
            ops_app.Ride(user_id=500 + i, card="4242-9999"),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'acidic.sqlite3'}"
        with ops_app.make_app(url) as app:
            app.migrate()
            _seed(app)
            with worker(url), dashboard(url, refresh=0) as base:
                app.enqueue(ops_app.Flaky(n=99), key="invoice-sync-299")
                wait_status(app, "invoice-sync-299", "failed")
                for i in range(6):
                    app.enqueue(ops_app.Ride(user_id=900 + i, card="4242-1111"), key=f"ride-q{i}")
                wait_status(app, "ride-q5", "succeeded")
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    shots = [
                        ("overview.png", "/"),
                        ("runs.png", "/runs"),
                        ("run-failed.png", "/run?key=invoice-sync-299"),
                        ("run-succeeded.png", "/run?key=ride-1003"),
                    ]
                    for name, path in shots:
                        page.goto(base + path)
                        page.screenshot(path=str(options.out / name), full_page=name != "runs.png")
                        print(f"wrote {options.out / name}")
                    browser.close()


if __name__ == "__main__":
    main()
