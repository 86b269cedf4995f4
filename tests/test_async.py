"""The asyncio side: async steps, the App's ``*_async`` twins, event loops in turn, the
asyncio engine a URL derives, and ORM sessions in steps (sync and async).

The semantics of runs (keys, locks, fencing, crashes, outcomes, retries, signals,
cancel) are tested once for every flavour of step by the ``flavour`` fixture of the
semantics modules (tests/support/flavours.py); this module tests what is particular to
asyncio and to ORM sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

import acidic
from acidic.testing import assert_each_step_succeeded_once, crash_points
from tests.support import orm_jobs
from tests.support.jobs import effect_counts, effects, migrated_app, rides

SEEN: dict[str, Any] = {}


class Ping(acidic.Job):
    """An async job: a write through ``tx``, an awaited foreign call, a result."""

    n: int = 0

    @acidic.step
    async def write(self, tx: AsyncConnection) -> None:
        SEEN["tx"] = type(tx).__name__
        await tx.execute(effects.insert().values(run_key=self.key, step="write"))

    @acidic.step(transactional=False)
    async def call(self) -> None:
        await asyncio.sleep(0.001)
        self.ctx["called"] = self.attempt

    @acidic.step
    async def done(self, tx: AsyncConnection) -> acidic.Response:
        return acidic.Response({"n": self.n, "called": self.ctx["called"]})


class SyncPing(acidic.Job):
    @acidic.step
    def write(self, tx: sa.Connection) -> acidic.Response:
        SEEN["thread"] = threading.get_ident()
        tx.execute(effects.insert().values(run_key=self.key, step="write"))
        return acidic.Response("sync")


class Waiter(acidic.Job):
    """Halts until signalled; fails while ``SEEN['fail']`` is set."""

    @acidic.step
    async def wait(self, tx: AsyncConnection) -> acidic.Halt | acidic.Response:
        payload = self.signal("go")
        if payload is None:
            return acidic.Halt()
        if SEEN.get("fail"):
            raise RuntimeError("told to fail")
        return acidic.Response(payload)


class OrmSync(acidic.Job):
    """Writes through a sync ORM ``Session``; ``how`` misbehaves."""

    how: str = "ok"

    @acidic.step
    def write(self, tx: Session) -> acidic.Response:
        SEEN["info"] = dict(tx.info)
        tx.add(orm_jobs.Booking(run_key=self.key, seat="flushed"))
        tx.flush()
        tx.add(orm_jobs.Booking(run_key=self.key, seat="unflushed"))
        if self.how in ("commit", "rollback"):
            getattr(tx, self.how)()
        if self.how in ("caught-commit", "caught-rollback"):
            with contextlib.suppress(acidic.JobDefinitionError):
                getattr(tx, self.how.removeprefix("caught-"))()
        return acidic.Response("done")


class OrmAsync(acidic.Job):
    """Writes through an ``AsyncSession``; ``how`` misbehaves."""

    how: str = "ok"

    @acidic.step
    async def write(self, tx: AsyncSession) -> acidic.Response:
        SEEN["info"] = dict(tx.info)
        tx.add(orm_jobs.Booking(run_key=self.key, seat="flushed"))
        await tx.flush()
        tx.add(orm_jobs.Booking(run_key=self.key, seat="unflushed"))
        if self.how in ("commit", "rollback"):
            await getattr(tx, self.how)()
        if self.how in ("caught-commit", "caught-rollback"):
            with contextlib.suppress(acidic.JobDefinitionError):
                await getattr(tx, self.how.removeprefix("caught-"))()
        return acidic.Response("done")


JOBS: dict[str, type[acidic.Job]] = {
    "a.Ping": Ping,
    "a.SyncPing": SyncPing,
    "a.Waiter": Waiter,
    "a.OrmSync": OrmSync,
    "a.OrmAsync": OrmAsync,
}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    SEEN.clear()
    yield
    SEEN.clear()


@pytest.fixture
def aapp(database_url: str) -> Iterator[acidic.App]:
    with migrated_app(database_url, JOBS) as app:
        orm_jobs.create_tables(app)
        yield app


def _rides_free(app: acidic.App) -> None:
    with app.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(rides)).scalar_one() == 0


# -- definitions -------------------------------------------------------------------------


def test_definition__mixing_sync_and_async_steps_raises_naming_async() -> None:
    with pytest.raises(acidic.JobDefinitionError, match="async"):

        class Mixed(acidic.Job):
            @acidic.step
            async def one(self, tx: AsyncConnection) -> None: ...

            @acidic.step
            def two(self, tx: sa.Connection) -> None: ...


def test_definition__async_steps_are_checked_like_sync_ones() -> None:
    with pytest.raises(acidic.JobDefinitionError, match="wrong signature"):

        class Bad(acidic.Job):
            @acidic.step(transactional=False)
            async def one(self, tx: AsyncConnection) -> None: ...


# -- the async API -----------------------------------------------------------------------


def test_run_async__async_job_runs_on_the_loop_with_an_async_connection(
    aapp: acidic.App,
) -> None:
    async def main() -> tuple[Any, Any, acidic.Run | None]:
        first = await aapp.run_async(Ping(n=1), key="p")
        again = await aapp.run_async(Ping(n=1), key="p")  # stored result, nothing runs
        return first, again, await aapp.get_async("p")

    first, again, run = asyncio.run(main())
    assert first == again == {"n": 1, "called": 1}
    assert SEEN["tx"] == "AsyncConnection"
    assert run is not None
    assert run.status == "succeeded"
    assert_each_step_succeeded_once(run)
    assert effect_counts(aapp.engine, "p") == {"write": 1}


def test_run_async__argument_mismatch_and_locked_key_raise_as_sync(aapp: acidic.App) -> None:
    async def main() -> None:
        await aapp.run_async(Ping(n=1), key="p")
        with pytest.raises(acidic.ArgumentMismatchError):
            await aapp.run_async(Ping(n=2), key="p")

    asyncio.run(main())


def test_run_async__sync_job_runs_in_a_worker_thread(aapp: acidic.App) -> None:
    async def main() -> Any:
        return await aapp.run_async(SyncPing(), key="s")

    assert asyncio.run(main()) == "sync"
    assert SEEN["thread"] != threading.get_ident()


def test_run__async_job_runs_on_a_loop_of_its_own_without_a_running_loop(
    aapp: acidic.App,
) -> None:
    assert aapp.run(Ping(n=3), key="own") == {"n": 3, "called": 1}
    assert aapp.run(Ping(n=3), key="own") == {"n": 3, "called": 1}


def test_run__async_job_inside_a_running_loop_raises_naming_run_async_and_leaves_nothing(
    aapp: acidic.App,
) -> None:
    async def main() -> None:
        with pytest.raises(acidic.AcidicError, match="run_async"):
            aapp.run(Ping(n=1), key="inside")

    asyncio.run(main())
    assert aapp.get("inside") is None  # no run, so no lock either
    assert aapp.run(Ping(n=1), key="inside") == {"n": 1, "called": 1}


def test_event_loops__an_app_serves_several_loops_in_turn(aapp: acidic.App) -> None:
    async def once(i: int) -> Any:
        return await aapp.run_async(Ping(n=i), key=f"loop-{i}")

    for i in range(3):
        assert asyncio.run(once(i)) == {"n": i, "called": 1}
        assert aapp.run(Ping(n=10 + i)) == {"n": 10 + i, "called": 1}  # a loop of its own
    # A loop that is not asyncio.run's, closed without shutting down its generators.
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(once(7)) == {"n": 7, "called": 1}
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    assert asyncio.run(once(8)) == {"n": 8, "called": 1}


def test_async_engine__is_the_running_loops_and_derived_from_the_url(aapp: acidic.App) -> None:
    async def engines() -> tuple[Any, Any]:
        return aapp.async_engine, aapp.async_engine

    async def while_another_loop_runs() -> tuple[Any, Any]:
        mine = aapp.async_engine
        # A loop in another thread, alive at the same time: an engine of its own.
        other = await asyncio.to_thread(lambda: asyncio.run(engines())[0])
        return mine, other

    first, second = asyncio.run(engines())
    assert first is second
    assert first.url.get_backend_name() == aapp.engine.url.get_backend_name()
    assert first.dialect.is_async
    mine, other = asyncio.run(while_another_loop_runs())
    assert mine is not other
    # Once a loop ended, its engine (connections closed) serves a later loop.
    assert {id(mine), id(other)} >= {id(asyncio.run(engines())[0])}


def test_app__takes_an_async_engine(database_url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from acidic._storage._engines import async_url

    engine = create_async_engine(async_url(sa.make_url(database_url)))
    with migrated_app(database_url, JOBS):
        pass
    app = acidic.App(engine)
    app.job(name="a.Ping")(Ping)

    async def main() -> Any:
        if engine.dialect.name != "sqlite":  # SQLite: acidic's own engine on the file
            assert app.async_engine is engine
        return await app.run_async(Ping(n=5), key="given")

    try:
        assert asyncio.run(main()) == {"n": 5, "called": 1}
        assert app.get("given") is not None  # the sync side: the same database
    finally:
        app.close()


def test_enqueue_async__in_the_callers_transaction_async_connection_and_session(
    aapp: acidic.App,
) -> None:
    async def main() -> None:
        engine = aapp.async_engine
        async with engine.connect() as conn:
            async with conn.begin() as tx:
                await aapp.enqueue_async(Ping(n=1), key="rolled-back", connection=conn)
                await tx.rollback()
            async with conn.begin():
                run = await aapp.enqueue_async(Ping(n=2), key="committed", connection=conn)
                assert run.status == "pending"
        async with AsyncSession(engine) as session, session.begin():
            await aapp.enqueue_async(Ping(n=3), key="by-session", connection=session)

    asyncio.run(main())
    assert aapp.get("rolled-back") is None
    assert aapp.drain() == 2
    for key in ("committed", "by-session"):
        run = aapp.get(key)
        assert run is not None, key
        assert run.status == "succeeded", key


def test_async_twins__resume_signal_retry_cancel_migrate(aapp: acidic.App) -> None:
    async def main() -> None:
        assert await aapp.migrate_async() == []  # migrated already
        assert await aapp.run_async(Waiter(), key="w") is None  # halted
        run = await aapp.resume_async("w")
        assert run.status == "pending"
        SEEN["fail"] = True
        run = await aapp.signal_async("w", "go", {"x": 1})
        assert run.status in ("pending", "halted")
        with pytest.raises(RuntimeError, match="told to fail"):
            await aapp.run_async(Waiter(), key="w")
        got = await aapp.get_async("w")
        assert got is not None
        assert got.status in ("scheduled", "failed")
        if got.status == "failed":
            await aapp.retry_async("w")
        SEEN["fail"] = False
        await aapp.run_async(Waiter(), key="w2")
        cancelled = await aapp.cancel_async("w2")
        assert cancelled.status == "cancelled"
        with pytest.raises(acidic.UnknownKeyError):
            await aapp.cancel_async("nope")

    asyncio.run(main())
    assert aapp.drain() >= 0


def test_missing_async_driver__names_the_extra(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "aiosqlite", None)
    app = acidic.App(f"sqlite:///{tmp_path / 'x.sqlite3'}")

    async def main() -> None:
        with pytest.raises(acidic.AcidicError, match=r"acidic\[async\]"):
            await app.migrate_async()

    try:
        asyncio.run(main())
    finally:
        app.close()


# -- ORM sessions ------------------------------------------------------------------------


@pytest.mark.parametrize("job", [OrmSync, OrmAsync])
def test_session__flushed_and_unflushed_objects_commit_with_the_step(
    aapp: acidic.App, job: type[acidic.Job]
) -> None:
    assert aapp.run(job(), key="orm") == "done"
    assert orm_jobs.bookings(aapp, "orm") == ["flushed", "unflushed"]


@pytest.mark.parametrize("job", [OrmSync, OrmAsync])
@pytest.mark.parametrize("how", ["commit", "rollback", "caught-commit", "caught-rollback"])
def test_session__commit_or_rollback_fails_the_step_with_nothing_committed(
    aapp: acidic.App, job: type[acidic.Job], how: str
) -> None:
    with pytest.raises(acidic.JobDefinitionError, match=how.removeprefix("caught-")):
        aapp.run(job(how=how), key="bad")  # type: ignore[call-arg]
    assert orm_jobs.bookings(aapp, "bad") == []
    run = aapp.get("bad")
    assert run is not None
    assert run.status == "failed"
    assert run.error is not None
    assert run.error.type.endswith("JobDefinitionError")


def test_session__the_apps_session_factories_make_the_sessions(database_url: str) -> None:
    factories: list[tuple[Any, type[acidic.Job]]] = [
        (sessionmaker(info={"made_by": "sessionmaker"}), OrmSync),
        (async_sessionmaker(info={"made_by": "async_sessionmaker"}), OrmAsync),
    ]
    for factory, job in factories:
        with migrated_app(database_url, JOBS, session_factory=factory) as app:
            orm_jobs.create_tables(app)
            key = f"factory-{job.__name__}"
            assert app.run(job(), key=key) == "done"
            assert SEEN["info"] == factory.kw["info"]
            assert orm_jobs.bookings(app, key) == ["flushed", "unflushed"]


@pytest.mark.slow
@pytest.mark.timeout(600)  # a process per point: slow on a loaded machine
@pytest.mark.parametrize("mode", ["raise", "kill"])
def test_crash__async_session_rows_exist_exactly_once_after_every_crash_point(
    database_url: str, mode: acidic.testing.CrashMode
) -> None:
    app = orm_jobs.make_app(database_url)
    try:
        app.migrate()
        orm_jobs.create_tables(app)
        kinds = set()
        # Killing a process per point costs seconds: kill at the step's own points only.
        where = (lambda p: p.step == "book") if mode == "kill" else None
        for crashed in crash_points(
            app,
            orm_jobs.BookSeats(seats=2),
            mode=mode,
            app_factory="tests.support.orm_jobs:make_app",
            where=where,
        ):
            at = f"crashed at {crashed.point}"
            assert crashed.crashed, at
            assert_each_step_succeeded_once(crashed.run)
            assert crashed.run.result == 3, at
            assert orm_jobs.bookings(app, crashed.key) == ["seat-0", "seat-1", "unflushed"], at
            kinds.add((crashed.point.step, crashed.point.kind))
        # Killed between the flush and the commit, and after the commit took effect.
        assert {("book", "commit"), ("book", "acknowledgement")} <= kinds, kinds
    finally:
        app.close()


# -- the worker --------------------------------------------------------------------------


class Nap(acidic.Job):
    """An async job whose foreign step awaits; counts how many run at once."""

    i: int

    @acidic.step(transactional=False)
    async def nap(self) -> None:
        SEEN["now"] = SEEN.get("now", 0) + 1
        SEEN["most"] = max(SEEN.get("most", 0), SEEN["now"])
        await asyncio.sleep(0.3)
        SEEN["now"] -= 1

    @acidic.step
    async def done(self, tx: AsyncConnection) -> acidic.Response:
        await tx.execute(effects.insert().values(run_key=self.key, step="done"))
        return acidic.Response(self.i)


def test_worker__runs_async_jobs_at_once_on_its_loop_beside_sync_jobs(database_url: str) -> None:
    with migrated_app(database_url, {**JOBS, "a.Nap": Nap}) as app:
        for i in range(12):
            app.enqueue(Nap(i=i), key=f"nap-{i}")
        app.enqueue(SyncPing(), key="sync")
        worker = app.worker(concurrency=12, poll_interval=0.2)
        thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while worker.outcomes.get("succeeded", 0) < 13 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            worker.stop()
            thread.join(30)
        assert worker.outcomes["succeeded"] == 13, dict(worker.outcomes)
        assert SEEN["most"] > 1  # several naps awaited at once on the one loop
        assert SEEN["thread"] != threading.get_ident()  # the sync job: in a thread
        for i in range(12):
            run = app.get(f"nap-{i}")
            assert run is not None
            assert run.result == i
            assert effect_counts(app.engine, f"nap-{i}") == {"done": 1}
