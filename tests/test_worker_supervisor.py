"""``acidic worker --processes N``: one supervisor, N real worker processes.

What a user relies on: the runs are shared by the N processes and each executes once;
a stop (SIGTERM to the whole group, as systemd sends it, or to the supervisor alone)
is graceful everywhere and exits 0; a second signal stops at once; a child that dies
is replaced; children never outlive a supervisor killed with SIGKILL; a database that
cannot be served is refused once, before any child starts.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import acidic
from tests.support import worker_app as wa

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("worker-cpu-bound")]

STARTED = re.compile(r"worker process (\d+) started")


@pytest.fixture
def app(database_url: str) -> Any:
    with wa.migrated(database_url) as application:
        yield application


def _children(supervisor: wa.WorkerProcess) -> list[int]:
    """The pids of the children the supervisor started, in order (restarts included)."""
    return [int(pid) for pid in STARTED.findall(supervisor.output())]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child reparented to init and exited is reaped at once; one of ours that
    # exited and was not reaped yet is a zombie: not alive either.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _start(
    database_url: str, tmp_path: Path, started: list[wa.WorkerProcess], **options: Any
) -> tuple[wa.WorkerProcess, list[int]]:
    # Polling often: on SQLite and MariaDB nothing wakes an idle worker process when its
    # sibling is the one that found the runs.
    options.setdefault("poll_interval", 0.1)
    supervisor = wa.spawn_worker(
        database_url, tmp_path / f"supervisor-{len(started)}.log", processes=2, **options
    )
    started.append(supervisor)
    wa.wait_for(
        lambda: supervisor.output().count("worker started") >= 2,
        "both worker processes to start",
        60,
        detail=supervisor.output,
    )
    children = _children(supervisor)
    assert len(children) == 2
    assert supervisor.pid not in children
    return supervisor, children


def test_processes__two_processes_share_the_runs_and_stop_gracefully(
    app: acidic.App, database_url: str, backend: str, tmp_path: Path
) -> None:
    n = 60
    with wa.worker_processes() as started:
        supervisor, children = _start(database_url, tmp_path, started, concurrency=2)
        for i in range(n):
            app.enqueue(wa.Drain(n=i, pause=0.1), key=f"shared-{i}")
        wa.wait_for(
            lambda: wa.status_counts(app) == {"succeeded": n},
            f"all {n} runs to succeed",
            60,
            detail=lambda: (wa.status_counts(app), supervisor.output()[-3000:]),
        )
        supervisor.signal_group(signal.SIGTERM)  # every process of the group, as systemd
        assert supervisor.wait(30) == 0, supervisor.output()
    rows = wa.effects(app)
    assert sorted(r["run_key"] for r in rows) == sorted(f"shared-{i}" for i in range(n))
    # The children executed the runs, the supervisor none. Both children took some,
    # except on SQLite: a step holds its one write lock, so runs go one at a time to
    # whichever process gets the lock first after each commit, often the same one.
    pids = {r["pid"] for r in rows}
    assert pids <= set(children)
    if backend != "sqlite":
        assert pids == set(children)
    assert not any(_alive(pid) for pid in children)
    # One signal each, relayed once: graceful everywhere, never "at once".
    assert "at once" not in supervisor.output()


def test_processes__a_killed_child_is_replaced(
    app: acidic.App, database_url: str, tmp_path: Path
) -> None:
    with wa.worker_processes() as started:
        supervisor, children = _start(database_url, tmp_path, started, concurrency=1)
        os.kill(children[0], signal.SIGKILL)
        wa.wait_for(
            lambda: len(_children(supervisor)) == 3,
            "a replacement worker process",
            30,
            detail=supervisor.output,
        )
        replacement = _children(supervisor)[2]
        assert replacement not in children
        assert _alive(replacement)
        wa.wait_for(
            lambda: supervisor.output().count("worker started") >= 3,
            "the replacement to start",
            60,
            detail=supervisor.output,
        )
        for i in range(20):
            app.enqueue(wa.Drain(n=i, pause=0.05), key=f"after-{i}")
        wa.wait_for(
            lambda: wa.status_counts(app) == {"succeeded": 20},
            "the runs to succeed",
            60,
            detail=lambda: (wa.status_counts(app), supervisor.output()[-3000:]),
        )
        assert {r["pid"] for r in wa.effects(app)} <= {children[1], replacement}
        os.kill(supervisor.pid, signal.SIGTERM)  # the supervisor alone: it relays
        assert supervisor.wait(30) == 0, supervisor.output()
    assert "exited with -9" in supervisor.output()
    assert not any(_alive(pid) for pid in (children[1], replacement))


def test_processes__children_stop_when_the_supervisor_is_killed(
    app: acidic.App, database_url: str, tmp_path: Path
) -> None:
    with wa.worker_processes() as started:
        supervisor, children = _start(database_url, tmp_path, started, concurrency=1)
        os.kill(supervisor.pid, signal.SIGKILL)
        assert supervisor.wait(10) == -signal.SIGKILL
        wa.wait_for(
            lambda: not any(_alive(pid) for pid in children),
            "the orphaned worker processes to stop",
            30,
            detail=supervisor.output,
        )
    assert supervisor.output().count("supervisor gone: stopping gracefully") == 2


def test_processes__second_signal_stops_at_once(
    app: acidic.App, database_url: str, tmp_path: Path
) -> None:
    key = "held"
    with wa.worker_processes() as started:
        supervisor, children = _start(
            database_url, tmp_path, started, concurrency=1, grace=30.0, lock_timeout=1.0
        )
        app.enqueue(wa.Napper(hold=60.0), key=key)
        wa.wait_for(lambda: wa.markers(app, key), "hold_step to start", 30)
        supervisor.signal_group(signal.SIGTERM)
        wa.wait_for(
            lambda: "stopping the worker processes gracefully" in supervisor.output(),
            "the first signal to be handled",
            10,
        )
        time.sleep(0.3)
        assert supervisor.alive()  # a child waits for its step, which sleeps a minute
        sent = time.monotonic()
        supervisor.signal_group(signal.SIGTERM)
        code = supervisor.wait(10)
        assert time.monotonic() - sent < 5.0
        assert code not in (0, None), supervisor.output()
        wa.wait_for(lambda: not any(_alive(pid) for pid in children), "the children to be gone", 10)
    assert wa.effect_steps(app, key) == {}  # cut short, not committed


def test_processes__an_unmigrated_database_is_refused_before_any_child_starts(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    acidic.App(url).close()  # an empty file, no tables
    with wa.worker_processes() as started:
        supervisor = wa.spawn_worker(url, tmp_path / "refused.log", processes=2)
        started.append(supervisor)
        code = supervisor.wait(30)
    assert code == 1, supervisor.output()
    assert "migrate" in supervisor.output()
    assert _children(supervisor) == []
