"""Semantic 6 with real processes: callers racing on one key. Exactly one executes
each step; every other caller is refused with KeyLockedError at once (without
waiting for the holder's open step transaction) or, once the run finished, gets its
stored result. Creating the key row under a race never surfaces as an error.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import acidic
from tests.support import procs
from tests.support.flavours import PROCESS_FLAVOURS
from tests.support.jobs import CreateRide, Hold, effect_counts, make_app, rides

#: Every flavour of step (sync, async, ORM session, async ORM session; the last three in
#: CI's second phase, scripts/test-flavours).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("flavour"),
    pytest.mark.parametrize("flavour", PROCESS_FLAVOURS, indirect=True),
]

#: How many processes race on a held key (LATE of them a little later), and to
#: create a new one.
N = 8
LATE = 2
N_CREATE = 5
#: Slow.hold (and Hold.hold) keep their transaction open this long; Slow.wait sleeps as long.
SECONDS = 2.0
#: "At once": a refusal must come well under a second, and well before the holder's
#: transaction could have ended.
AT_ONCE = 0.75
#: The same for a new App's first call, which connects and reads the schema's version
#: first (0.94 s seen on a loaded 2-core machine): still well before the holder's step,
#: SECONDS long, could have ended (waiting for it would take over 1.9 s).
FRESH_AT_ONCE = 1.5


def test_concurrency__same_key_one_executes_others_refused_at_once(
    app: acidic.App, database_url: str
) -> None:
    key = "slow-race"
    # N - LATE processes start together; LATE more arrive while the winner sleeps in
    # hold with its transaction open (a new process's first call: its App has not
    # looked at the database yet).
    outcomes = procs.run_together(
        database_url, "Slow", key, {"seconds": SECONDS}, N, late=LATE, late_after=0.3
    )

    kinds = Counter(procs.names(outcomes))
    assert kinds == {"result": 1, "KeyLockedError": N - 1}, outcomes
    winner = next(o for o in outcomes if "result" in o)
    assert winner["result"] == 1  # Slow.finish returns the attempt: claimed once
    assert winner["elapsed"] >= 2 * SECONDS  # it really held the key through both sleeps
    assert all("error" in o for o in outcomes[N - LATE :])  # too late to win
    together = [round(o["elapsed"], 3) for o in outcomes[: N - LATE] if "error" in o]
    assert max(together) < AT_ONCE, f"refusals waited: {together}"
    late = [round(o["elapsed"], 3) for o in outcomes[N - LATE :]]
    assert max(late) < AT_ONCE, f"late refusals waited for the holder's step: {late}"
    for o in outcomes:
        if "error" in o:
            assert key in o["message"]

    assert effect_counts(app.engine, key) == {"hold": 1, "finish": 1}
    run = app.get(key)
    assert run is not None
    assert run.status == "succeeded"
    assert run.attempts == 1
    assert procs.events(run) == [
        (step, event, 1)
        for step in ("hold", "wait", "finish")
        for event in ("started", "succeeded")
    ]


@contextmanager
def _held_in_hold(app: acidic.App, database_url: str, key: str) -> Iterator[None]:
    """A thread runs Hold under ``key``; inside the block it sleeps in hold, with
    hold's transaction open (SECONDS long). Afterwards the run has succeeded once."""
    holder = make_app(database_url)
    held: dict[str, Any] = {}

    def hold() -> None:
        held["result"] = holder.run(Hold(seconds=SECONDS), key=key)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        procs.wait_for(lambda: app.get(key), "the holder's claim")
        time.sleep(0.1)  # the holder is now asleep inside hold's transaction
        yield
    finally:
        thread.join(timeout=30)
        holder.close()
    assert held == {"result": 1}
    assert effect_counts(app.engine, key) == {"hold": 1}


def test_concurrency__caller_that_lost_the_creation_race_is_refused_at_once(
    app: acidic.App, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race above made deterministic: a caller read the key as absent just before
    the holder created it (simulated by its first ``find`` answering None), so it
    tries to create the row too, loses, and must still be refused at once while the
    holder sits in hold's open transaction."""
    key = "slow-lost-insert"
    caller = make_app(database_url)
    try:
        procs.warm(caller, key)  # the caller's App is warm: schema checked, engines ready
        with _held_in_hold(app, database_url, key):
            store = caller._store
            real_find = type(store).find
            answers: list[str] = []

            def find(self: Any, k: str, **options: Any) -> Any:
                # The caller's stores only: its sync one, or (an async job's run) the
                # asyncio store of its loop, whose sync twin is the sync one.
                if not answers and store in (self, getattr(self, "sync_twin", None)):
                    answers.append(k)
                    return None  # what it read an instant before the holder's insert
                return real_find(self, k, **options)

            monkeypatch.setattr(type(store), "find", find)
            start = time.monotonic()
            with pytest.raises(acidic.KeyLockedError, match=key):
                caller.run(Hold(seconds=SECONDS), key=key)
            elapsed = time.monotonic() - start
            assert answers == [key]
            assert elapsed < AT_ONCE, f"the refusal waited {elapsed:.2f} s for the holder's step"
    finally:
        caller.close()


def test_concurrency__fresh_app_is_refused_at_once(app: acidic.App, database_url: str) -> None:
    """A new process's first call (its App has not looked at the database yet) on a
    key whose holder sits in a transactional step is refused at once too."""
    key = "slow-fresh-caller"
    with _held_in_hold(app, database_url, key):
        caller = make_app(database_url)
        try:
            start = time.monotonic()
            with pytest.raises(acidic.KeyLockedError, match=key):
                caller.run(Hold(seconds=SECONDS), key=key)
            elapsed = time.monotonic() - start
        finally:
            caller.close()
        assert elapsed < FRESH_AT_ONCE, f"the refusal waited {elapsed:.2f} s for the holder's step"


def test_concurrency__racing_to_create_a_key_makes_one_run(
    app: acidic.App, database_url: str
) -> None:
    key = "ride-race"
    args = {"user_id": 3, "origin": "a", "target": "b"}
    outcomes = procs.run_together(database_url, "CreateRide", key, args, N_CREATE)

    run = app.get(key)
    assert run is not None
    assert run.status == "succeeded"
    assert run.attempts == 1
    assert len(run.history) == 6
    assert effect_counts(app.engine, key) == {"create_ride": 1, "send_receipt": 1}
    assert procs.count_rows(app.engine, rides) == 1

    kinds = Counter(procs.names(outcomes))
    assert set(kinds) <= {"result", "KeyLockedError"}, outcomes
    assert kinds["result"] >= 1
    for o in outcomes:
        if "result" in o:
            assert o["result"] == run.result


def test_concurrency__threads_on_distinct_keys_never_see_contention(
    app: acidic.App, database_url: str
) -> None:
    threads_n, keys_per_thread = 6, 5
    barrier = threading.Barrier(threads_n)
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        app = make_app(database_url)  # each thread its own App on the same database
        try:
            barrier.wait(timeout=30)
            for i in range(keys_per_thread):
                key = f"t{t}-k{i}"
                results[key] = app.run(CreateRide(user_id=t, origin=str(i), target="x"), key=key)
        except BaseException as exc:
            errors.append(exc)
        finally:
            app.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not [t for t in threads if t.is_alive()]
    assert errors == []  # in particular no acidic.ContentionError
    assert len(results) == threads_n * keys_per_thread
    assert procs.count_rows(app.engine, rides) == threads_n * keys_per_thread
    for key, result in results.items():
        run = app.get(key)
        assert run is not None
        assert (run.status, run.attempts, run.result) == ("succeeded", 1, result)
        assert effect_counts(app.engine, key) == {"create_ride": 1, "send_receipt": 1}
