"""Steps in Django's transaction: ORM writes commit with the step's progress, in real
processes killed with SIGKILL; enqueue joins the view's transaction."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from .conftest import Project

# Each test starts several Django processes: slow on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: What the ride job writes through the ORM, each row once.
STAGES = ["done", "raw", "reserved", "seat1", "seat2"]

STATE = (
    "import json\n"
    "from acidic.django import app\n"
    "from tests.django.project.rides.models import Ride\n"
    "out = {{}}\n"
    "for rider in {riders!r}:\n"
    "    r = app.get('ride:' + rider)\n"
    "    stages = sorted(Ride.objects.filter(rider=rider).values_list('stage', flat=True))\n"
    "    out[rider] = [stages, None if r is None else [r.status.value, r.result, r.attempts]]\n"
    "print(json.dumps(out))\n"
)


def state(project: Project, *riders: str) -> dict[str, list[object]]:
    """Per rider: the stages of its Ride rows, and its run (status, result, attempts)."""
    return dict(json.loads(project.shell(STATE.format(riders=list(riders)))))


def resume(project: Project, rider: str) -> dict[str, object]:
    """Run the key again until the dead owner's lock (2 s) is stale and it is taken over."""
    deadline = time.monotonic() + 30
    while True:
        done = project.manage("ride", rider, check=False)
        if done.returncode == 0:
            return dict(json.loads(done.stdout))
        assert "KeyLockedError" in done.stderr, done.stderr
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_steps__orm_rows_commit_with_progress(project: Project) -> None:
    done = project.manage("ride", "ann")
    result = {"rides": 5, "reserved": True, "charged": 4}
    assert json.loads(done.stdout) == result
    assert state(project, "ann")["ann"] == [STAGES, ["succeeded", result, 1]]
    # Run again: the stored result, no step runs (the unique rows would refuse it).
    assert json.loads(project.manage("ride", "ann").stdout)["rides"] == 5


@pytest.mark.parametrize("crash", ["before", "after"])
def test_steps__sigkill_around_the_commit__each_row_once(project: Project, crash: str) -> None:
    """Killed inside the first step before its commit (nothing of it stays), or right
    after its commit (an on_commit hook): the resumed run writes every row once."""
    rider = f"bea-{crash}"
    killed = project.manage("ride", rider, check=False, ACIDIC_TEST_CRASH=crash)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    expected_after_crash = [] if crash == "before" else ["raw", "reserved", "seat1", "seat2"]
    stages, run = state(project, rider)[rider]
    assert (stages, run[0]) == (expected_after_crash, "running")  # type: ignore[index]
    result = resume(project, rider)
    assert result == {"rides": 5, "reserved": True, "charged": 4}
    assert state(project, rider)[rider] == [STAGES, ["succeeded", result, 2]]


def test_steps__on_commit_runs_after_the_step_commits(project: Project, tmp_path: Path) -> None:
    marker = tmp_path / "on_commit"
    project.manage("ride", "cy", ACIDIC_TEST_ON_COMMIT=str(marker))
    assert marker.read_text().isdigit()


def test_enqueue__joins_the_view_transaction(project: Project) -> None:
    """A view that enqueues then raises leaves no run; one that returns leaves one,
    which the worker executes."""
    out = project.shell(
        "from django.test import Client;"
        "c = Client(raise_request_exception=False);"
        "print(c.get('/enqueue/dee/?fail=1').status_code, c.get('/enqueue/eve/').status_code)"
    )
    assert out.split() == ["500", "200"]
    found = state(project, "dee", "eve")
    assert found["dee"] == [[], None]
    assert found["eve"][1][0] == "pending"  # type: ignore[index]


def test_step__inside_atomic_is_refused(project: Project) -> None:
    out = project.shell(
        "from django.db import transaction\n"
        "from acidic.django import app\n"
        "from tests.django.project.rides.jobs import BookRide\n"
        "try:\n"
        "    with transaction.atomic():\n"
        "        app.run(BookRide(rider='fay'))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    assert out.startswith("AcidicError app.run() cannot run a job inside an open")
    assert state(project, "fay")["fay"] == [[], None]
