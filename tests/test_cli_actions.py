"""``acidic runs retry|resume|cancel`` refused by the run's status: the App decides (it
raises ``RunStateError``), the CLI says so with exit code 4, also when the status
changes between the selection of a bulk action and the action."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator

import pytest

import acidic
from tests.support.cli import ACIDIC
from tests.support.dashboard import ops_app
from tests.support.dashboard.helpers import seed
from tests.support.jobs import get_run
from tests.test_cli_runs import ROOT, cli, cli_json


@pytest.fixture
def seeded(database_url: str) -> Iterator[acidic.App]:
    app = ops_app.make_app(database_url)
    app.migrate()
    seed(app)
    try:
        yield app
    finally:
        app.close()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("cancel", "ride-0"),
            "cannot cancel key 'ride-0': it is succeeded; cancel applies to pending, running, "
            "halted, scheduled, awaiting, failed runs",
        ),
        (
            ("resume", "ride-0", "--from-step", "book"),
            "cannot resume key 'ride-0': it is succeeded; resume applies to halted, scheduled, "
            "awaiting, failed runs",
        ),
        (
            ("resume", "flaky-0"),
            "cannot resume key 'flaky-0': it is failed; resume applies to halted, scheduled, "
            "awaiting runs",
        ),
    ],
)
def test_runs_action__refused_by_the_status_exits_4_naming_it(
    seeded: acidic.App, args: tuple[str, ...], says: str
) -> None:
    done = cli(seeded, "runs", *args)
    assert done.returncode == 4, done.stderr
    assert done.stderr.strip() == f"acidic: error: {says}"
    assert get_run(seeded, args[1]).status == ("succeeded" if args[1] == "ride-0" else "failed")


def test_runs_cancel__twice_is_refused_the_second_time(seeded: acidic.App) -> None:
    first = cli_json(seeded, "runs", "cancel", "queued-ride")
    assert isinstance(first, dict)
    assert first["run"]["status"] == "cancelled"
    again = cli(seeded, "runs", "cancel", "queued-ride")
    assert again.returncode == 4
    assert "cannot cancel key 'queued-ride': it is cancelled" in again.stderr


def _read_until(fd: int, marker: bytes, timeout: float = 60.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if not ready:
            raise AssertionError(f"no {marker!r} within {timeout} s; read {seen!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"output ended before {marker!r}; read {seen!r}")
        seen += chunk
    return seen


@pytest.mark.parametrize("backend", ["sqlite"])
def test_runs_retry__a_run_changed_while_the_prompt_waits_is_left_and_exits_4(
    seeded: acidic.App,
) -> None:
    """The runs are counted, the prompt waits; meanwhile another operator cancels one.
    The bulk action reads its batches with the same filter, so that one is no longer
    selected and is left as it is (counted, said, exit 4); the other is retried."""
    url = seeded.engine.url.render_as_string(hide_password=False)
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [str(ACIDIC), "runs", "retry", "--job", "Flaky"],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "ACIDIC_DATABASE_URL": url},
            cwd=ROOT,
        )
        assert proc.stdout is not None
        prompt = _read_until(proc.stdout.fileno(), b"[y/N]")
        assert b"Retry 2 run(s) (status failed, job Flaky)?" in prompt
        seeded.cancel("flaky-0")  # the race: after the selection, before the action
        os.write(controller, b"y\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    assert proc.returncode == 4, (out, err)
    assert "retried 1 of 2 run(s)" in out.decode()
    assert (
        "left as they were: 1 run(s) no longer selected when reached (their status "
        "changed after they were counted)"
    ) in err.decode()
    assert get_run(seeded, "flaky-0").status == "cancelled"
    assert get_run(seeded, "flaky-1").status == "pending"


def test_runs_retry__in_bulk_goes_in_batches_up_to_the_runs_counted(
    seeded: acidic.App,
) -> None:
    """250 failed runs (three batches of BATCH = 100): counted, then retried batch by
    batch; the JSON names them all."""
    from acidic._admin import BulkAction, RunFilter
    from tests.support.dashboard.helpers import copy_run

    keys = [f"many-{i:03d}" for i in range(250)]
    copy_run(seeded, "flaky-0", keys)
    flt = RunFilter(statuses=("failed",), key_prefix="many-")
    plan = BulkAction(seeded, "retry", flt).plan()
    assert plan.count == 250

    done = cli_json(seeded, "runs", "retry", "--key-prefix", "many-", "--yes")
    assert isinstance(done, dict)
    assert (done["matched"], done["left"], done["changed"]) == (250, [], 0)
    assert sorted(done["done"]) == keys
    assert {get_run(seeded, k).status for k in keys} == {"pending"}

    nothing = cli(seeded, "runs", "retry", "--key-prefix", "many-", "--yes")
    assert nothing.returncode == 0, nothing.stderr
    assert "no runs to retry (status failed, key starting with 'many-')" in nothing.stdout
