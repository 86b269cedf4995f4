"""50 real processes race on one key, released at the same instant (a pipe closed by
their launcher): exactly one executes each step, every other gets KeyLockedError
(naming the key) or, once the run finished, its stored result; no effect is doubled.

Two races: creating a new key, and taking over a run whose owner was SIGKILLed (its
lock is stale when the racers are released, so all 50 try to claim it). The 8-process
race with "at once" timing is tests/test_concurrency.py; this is the crowd.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import acidic
from tests.support import procs
from tests.support.faults.helpers import racers
from tests.support.jobs import effect_counts, get_run, rides

pytestmark = [pytest.mark.slow, pytest.mark.storm]

N = 50
ARGS: dict[str, Any] = {"user_id": 1, "origin": "here", "target": "there"}
STEPS = ("create_ride", "charge", "send_receipt")
#: The winner sleeps this long in a step so that the race is decided while it runs
#: (50 processes woken at once on a busy 2-core machine take a while to all get there;
#: those arriving after the end get the stored result, which is correct too).
HOLD = 2.0
#: The racers' lock timeout: longer than any step, so no racer may take the winner over.
RACER_LOCK_TIMEOUT = 30.0


def _check_outcomes(outcomes: list[dict[str, Any]], key: str, result: Any) -> Counter[str]:
    kinds = Counter(o.get("error", "result") for o in outcomes)
    assert set(kinds) <= {"result", "KeyLockedError"}, kinds
    assert kinds["result"] >= 1, kinds
    for o in outcomes:
        if "error" in o:
            assert key in o["message"], o
        else:
            assert o["result"] == result, o
    assert len({o["pid"] for o in outcomes}) == N  # 50 distinct processes
    return kinds


def test_race__fifty_processes_create_one_key(
    app: acidic.App, database_url: str, tmp_path: Path
) -> None:
    key = "race-create"
    calls_file = tmp_path / "calls.log"
    with racers(
        database_url,
        "CreateRide",
        key,
        ARGS,
        N,
        tmp_path / "out",
        RACER_LOCK_TIMEOUT,
        ACIDIC_TEST_SLEEP=f"create_ride:{HOLD}",
        ACIDIC_TEST_CALLS=str(calls_file),
    ) as race:
        race.wait_ready()
        outcomes = race.release()

    run = get_run(app, key)
    assert (run.status, run.attempts, run.error) == ("succeeded", 1, None)
    kinds = _check_outcomes(outcomes, key, run.result)
    # The winner held create_ride for HOLD seconds: the race was real.
    assert kinds["KeyLockedError"] >= N // 5, kinds
    assert effect_counts(app.engine, key) == {"create_ride": 1, "send_receipt": 1}
    assert procs.count_rows(app.engine, rides) == 1
    assert procs.calls(calls_file) == [f"{key}\tcharge"]
    assert procs.events(run) == [(s, e, 1) for s in STEPS for e in ("started", "succeeded")]


def test_race__fifty_processes_take_over_one_stale_run(
    app: acidic.App, database_url: str, tmp_path: Path
) -> None:
    key = "race-takeover"
    calls_file = tmp_path / "calls.log"
    crash_lock_timeout = 1.0
    with racers(
        database_url,
        "CreateRide",
        key,
        ARGS,
        N,
        tmp_path / "out",
        RACER_LOCK_TIMEOUT,
        ACIDIC_TEST_SLEEP=f"charge:{HOLD}",
        ACIDIC_TEST_CALLS=str(calls_file),
    ) as race:
        # The owner dies after charge's foreign call, before recording it.
        code, out, err = procs.run_job(
            database_url,
            "CreateRide",
            key,
            ARGS,
            crash_lock_timeout,
            ACIDIC_TEST_CRASH="charge:called",
            ACIDIC_TEST_CALLS=str(calls_file),
        )
        assert code == -signal.SIGKILL, f"{code}: {out}\n{err}"
        race.wait_ready()
        procs.sleep_until_stale(app, key, crash_lock_timeout)
        dead = get_run(app, key)
        assert (dead.status, dead.recovery_point, dead.attempts) == ("running", "charge", 1)
        outcomes = race.release()

    run = get_run(app, key)
    assert (run.status, run.attempts, run.error) == ("succeeded", 2, None)  # one takeover
    kinds = _check_outcomes(outcomes, key, run.result)
    assert kinds["KeyLockedError"] >= N // 5, kinds
    assert effect_counts(app.engine, key) == {"create_ride": 1, "send_receipt": 1}
    assert procs.count_rows(app.engine, rides) == 1
    # The foreign call: once by the dead owner, once by the single taker.
    assert procs.calls(calls_file) == [f"{key}\tcharge"] * 2
    assert procs.events(run) == [
        ("create_ride", "started", 1),
        ("create_ride", "succeeded", 1),
        ("charge", "started", 1),
        ("charge", "started", 2),
        ("charge", "succeeded", 2),
        ("send_receipt", "started", 2),
        ("send_receipt", "succeeded", 2),
    ]
