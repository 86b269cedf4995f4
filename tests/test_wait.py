"""``app.wait``: blocks until a run is finished, returns its result, raises its failure
or cancellation, times out, and on PostgreSQL wakes within 50 ms of the run's commit."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

import acidic
from tests.support.jobs import migrated_app


class Double(acidic.Job):
    n: int

    @acidic.step
    def double(self, tx: sa.Connection) -> acidic.Response:
        return acidic.Response(self.n * 2)


class Broken(acidic.Job):
    max_attempts = 1

    @acidic.step
    def explode(self, tx: sa.Connection) -> None:
        raise ValueError("the card was declined")


class Waits(acidic.Job):
    @acidic.step
    def wait_for_approval(self, tx: sa.Connection) -> acidic.Halt | acidic.Response:
        if self.signal("approved") is None:
            return acidic.Halt()
        return acidic.Response("approved")


JOBS: dict[str, type[acidic.Job]] = {"Double": Double, "Broken": Broken, "Waits": Waits}


@pytest.fixture
def app(database_url: str) -> Iterator[acidic.App]:
    with migrated_app(database_url, JOBS) as application:
        yield application


def later(seconds: float, action: Callable[[], object]) -> threading.Thread:
    """Call ``action()`` in a thread after ``seconds``."""

    def go() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_wait__returns_the_result_once_a_worker_finishes_the_run(app: acidic.App) -> None:
    app.enqueue(Double(n=21), key="double")
    drainer = later(0.3, app.drain)
    started = time.monotonic()
    assert app.wait("double", timeout=10) == 42
    assert time.monotonic() - started >= 0.25  # it did wait for the worker
    drainer.join()
    assert app.wait("double") == 42  # a finished run answers at once


def test_wait_async__returns_the_result_without_blocking_the_loop(app: acidic.App) -> None:
    app.enqueue(Double(n=4), key="double-async")
    drainer = later(0.3, app.drain)

    async def main() -> tuple[object, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        result = await app.wait_async("double-async", timeout=10)
        ticker.cancel()
        return result, ticks

    result, ticks = asyncio.run(main())
    drainer.join()
    assert result == 8
    assert ticks >= 10  # the loop kept running while the run was awaited


def test_wait__raises_run_failed_error_with_the_stored_error(app: acidic.App) -> None:
    app.enqueue(Broken(), key="broken")
    drainer = later(0.2, app.drain)
    with pytest.raises(acidic.RunFailedError) as caught:
        app.wait("broken", timeout=10)
    drainer.join()
    error = caught.value.error
    assert error is not None
    assert (error.type, error.message, error.step) == (
        "builtins.ValueError",
        "the card was declined",
        "explode",
    )
    assert caught.value.key == "broken"
    assert "the card was declined" in str(caught.value)


def test_wait__raises_run_cancelled_error_for_a_cancelled_run(app: acidic.App) -> None:
    app.enqueue(Double(n=1), key="cancelled")
    canceller = later(0.2, lambda: app.cancel("cancelled"))
    with pytest.raises(acidic.RunCancelledError, match="cancelled"):
        app.wait("cancelled", timeout=10)
    canceller.join()


def test_wait__times_out_on_a_halted_run_and_returns_once_it_finishes(app: acidic.App) -> None:
    assert app.run(Waits(), key="approval") is None  # halted: not finished
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"'approval' did not finish within 0\.3 s"):
        app.wait("approval", timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2
    app.signal("approval", "approved", True)
    drainer = later(0.1, app.drain)
    assert app.wait("approval", timeout=10) == "approved"
    drainer.join()


def test_wait__refuses_an_unknown_key_and_bad_arguments(app: acidic.App) -> None:
    with pytest.raises(acidic.UnknownKeyError, match="'nobody'"):
        app.wait("nobody", timeout=1)
    with pytest.raises(acidic.InvalidArgumentError, match="timeout"):
        app.wait("nobody", timeout=-1)
    with pytest.raises(acidic.InvalidArgumentError, match="poll_interval"):
        app.wait("nobody", poll_interval=0)


@pytest.mark.alone
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_wait__wakes_within_50_ms_of_the_commit_on_postgresql(app: acidic.App) -> None:
    """The median delay from the run's last commit to ``wait`` returning, over 20 runs
    finished by ``app.run`` in another thread, is under 50 ms, with polling set to once
    a second: only the notification can wake it that fast."""
    delays = []
    for n in range(20):
        key = f"latency-{n}"
        app.enqueue(Double(n=n), key=key)
        finished: list[float] = []

        def finish(key: str = key, n: int = n, finished: list[float] = finished) -> None:
            app.run(Double(n=n), key=key)
            finished.append(time.monotonic())

        runner = later(0.05, finish)
        assert app.wait(key, timeout=10, poll_interval=1.0) == 2 * n
        woke = time.monotonic()
        runner.join()
        delays.append(woke - finished[0])
    assert statistics.median(delays) < 0.05, delays
