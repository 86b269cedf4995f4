"""A SIGKILLed run resumes where it stood, with real processes: a child running
CreateRide SIGKILLs itself at each point of each step; the database must show exactly
the committed steps, the key must stay locked until its lock is stale, and a second
process must then finish the run with every transactional effect once and the foreign
call at least once.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from tests.support import procs
from tests.support.flavours import PROCESS_FLAVOURS
from tests.support.jobs import CreateRide, effect_counts, make_app, rides

#: Every flavour of step (sync, async, ORM session, async ORM session; the last three in
#: CI's second phase, scripts/test-flavours).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("flavour"),
    pytest.mark.parametrize("flavour", PROCESS_FLAVOURS, indirect=True),
]

ARGS: dict[str, Any] = {"user_id": 7, "origin": "Lyon", "target": "Nice"}
#: Every process (the crashing one, the callers, the resumer) uses this lock timeout:
#: small, so the test is quick, yet with room for the refusal check after the crash.
LOCK_TIMEOUT = 0.75
#: ... with async or ORM-session steps: each ``app.run`` of an async job opens a
#: connection on a loop of its own, and a session step imports and builds the ORM's
#: machinery; on a loaded machine that ate the room above (CI, MariaDB).
FLAVOURED_LOCK_TIMEOUT = 2.0
STEPS = ("create_ride", "charge", "send_receipt")
CTX_OF = {"create_ride": "ride_id", "charge": "charge_id"}  # what each step stores


def _done(steps: tuple[str, ...], attempt: int) -> list[tuple[str, str, int]]:
    return [(s, e, attempt) for s in steps for e in ("started", "succeeded")]


@pytest.mark.parametrize(
    "crash",
    [
        "create_ride:before",
        "create_ride:written",
        "charge:before",
        "charge:called",
        "send_receipt:before",
        "send_receipt:written",
    ],
)
def test_crash__sigkill_in_step_then_resume_completes_once(
    app: acidic.App, database_url: str, tmp_path: Path, crash: str, flavour: str
) -> None:
    key = f"ride-{crash.replace(':', '-')}"
    calls_file = tmp_path / "calls.log"
    lock_timeout = LOCK_TIMEOUT if flavour == "sync" else FLAVOURED_LOCK_TIMEOUT

    with (
        make_app(database_url, lock_timeout=lock_timeout) as caller,
        procs.children() as children,
    ):
        procs.warm(caller, key)  # the refusal check below must be quick
        # The second process starts now (no crash), connects and waits for its turn.
        resumer = procs.prepare(
            database_url, "CreateRide", key, ARGS, lock_timeout, ACIDIC_TEST_CALLS=str(calls_file)
        )
        children.append(resumer)

        # 1. The first process dies by SIGKILL at the crash point.
        code, out, err = procs.run_job(
            database_url,
            "CreateRide",
            key,
            ARGS,
            lock_timeout,
            ACIDIC_TEST_CRASH=crash,
            ACIDIC_TEST_CALLS=str(calls_file),
        )
        assert code == -signal.SIGKILL, f"child exited {code}: {out}\n{err}"
        assert out == ""

        # 2. While the dead owner's lock is fresh, the key is refused (by an App
        # configured like the processes).
        with pytest.raises(acidic.KeyLockedError, match=key):
            caller.run(CreateRide(**ARGS), key=key)

        _check_crashed(app, key, crash, calls_file)

        # 4. Once the lock is stale, the second process takes the run over and finishes.
        procs.sleep_until_stale(app, key, lock_timeout)
        resumed = procs.release(resumer)
        assert "result" in resumed, resumed
        result = resumed["result"]
    _check_resumed(app, key, crash, calls_file, result)


def _check_crashed(app: acidic.App, key: str, crash: str, calls_file: Path) -> None:
    step = crash.partition(":")[0]
    committed = STEPS[: STEPS.index(step)]  # the steps that finished before the crash

    # 3. The database shows the committed steps once and the crashed step not at all;
    # the refused call changed nothing.
    run = app.get(key)
    assert run is not None
    assert run.status == "running"  # a dead owner still holds the lock
    assert run.recovery_point == step
    assert run.locked_at is not None
    assert run.attempts == 1
    assert run.result is None
    assert run.error is None
    expected_effects = {s: 1 for s in committed if s != "charge"}
    assert effect_counts(app.engine, key) == expected_effects
    assert procs.count_rows(app.engine, rides) == (0 if step == "create_ride" else 1)
    assert set(run.ctx) == {CTX_OF[s] for s in committed}
    history = _done(committed, 1)
    if step == "charge":  # non-transactional: its start is committed before the call
        history.append(("charge", "started", 1))
    assert procs.events(run) == history
    called = "charge" in committed or crash == "charge:called"
    assert procs.calls(calls_file) == [f"{key}\tcharge"] * called


def _check_resumed(app: acidic.App, key: str, crash: str, calls_file: Path, result: Any) -> None:
    step = crash.partition(":")[0]
    committed = STEPS[: STEPS.index(step)]
    history = _done(committed, 1) + ([("charge", "started", 1)] if step == "charge" else [])

    # 5. Every transactional effect exists once, the foreign call ran at least once.
    with app.engine.connect() as conn:
        ride_rows = conn.execute(sa.select(rides.c.id, rides.c.charge_id)).all()
    assert len(ride_rows) == 1
    ride_id, charge_id = ride_rows[0]
    assert charge_id is not None
    assert result == {"ride_id": ride_id, "charge_id": charge_id}

    done = app.get(key)
    assert done is not None
    assert done.status == "succeeded"
    assert done.result == result
    assert done.recovery_point is None
    assert done.locked_at is None
    assert done.error is None
    assert done.attempts == 2
    assert effect_counts(app.engine, key) == {"create_ride": 1, "send_receipt": 1}
    charges = 2 if crash == "charge:called" else 1  # at-least-once, twice only if called
    assert procs.calls(calls_file) == [f"{key}\tcharge"] * charges
    resumed = [s for s in STEPS if s not in committed]
    assert procs.events(done) == history + _done(tuple(resumed), 2)
    starts = [e.step for e in done.history if e.event == "started"]
    ends = [e.step for e in done.history if e.event != "started"]
    assert sorted(ends) == sorted(STEPS)  # exactly one end per step
    assert len(starts) == len(STEPS) + (step == "charge")  # one start per step start

    # 6. The finished key returns the same result without running anything.
    assert app.run(CreateRide(**ARGS), key=key) == result
    again = app.get(key)
    assert again is not None
    assert again.attempts == 2
    assert len(again.history) == len(done.history)
