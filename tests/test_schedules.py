"""Schedules: ticks computed right (cron in a timezone, fixed intervals), one run per
tick however many workers schedule it, at most ``catch_up`` missed ticks after
downtime, and bad arguments refused at ``app.schedule``."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import acidic
from acidic._storage._schema import runs
from acidic._worker._scheduler import Scheduler
from tests.support import flow_app, worker_app
from tests.support.cli import invoke_cli
from tests.support.worker_app import spawn_worker, worker_processes

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def plain_app(tmp_path: Path) -> Iterator[acidic.App]:
    """An App that is never connected to: schedules are checked without a database."""
    with acidic.App(f"sqlite:///{tmp_path / 'unused.sqlite3'}") as application:
        application.job(name="Stamp")(worker_app.Stamp)
        yield application


# -- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "61 * * * *"}, "bad cron expression '61 * * * *'"),
        ({"cron": "* * * *"}, "five-field"),
        ({"cron": "0 3 * * *", "every": dt.timedelta(seconds=5)}, "exactly one of"),
        ({}, "exactly one of"),
        ({"every": dt.timedelta(milliseconds=500)}, "whole number of seconds"),
        ({"every": 5}, "every must be a timedelta"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"cron": "0 3 * * *", "catch_up": -1}, "catch_up must be an int >= 0"),
        ({"cron": "0 3 * * *", "queue": "nope"}, "queue 'nope' is not declared"),
    ],
)
def test_schedule__bad_arguments_raise_a_value_error_naming_them(
    plain_app: acidic.App, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        plain_app.schedule("nightly", worker_app.Stamp(n=1), **options)  # type: ignore[arg-type]
    assert isinstance(caught.value, acidic.AcidicError)
    assert message in str(caught.value)
    assert "nightly" not in plain_app.schedules


def test_schedule__refuses_a_second_schedule_of_the_same_name_and_unregistered_jobs(
    plain_app: acidic.App,
) -> None:
    plain_app.schedule("nightly", worker_app.Stamp(n=1), cron="0 3 * * *")
    with pytest.raises(acidic.InvalidArgumentError, match="already registered"):
        plain_app.schedule("nightly", worker_app.Stamp(n=2), cron="0 4 * * *")
    with pytest.raises(acidic.UnknownJobError):
        plain_app.schedule("other", worker_app.Nap(seconds=1), cron="0 3 * * *")
    assert list(plain_app.schedules) == ["nightly"]


def test_tick_key__is_the_schedule_name_and_the_tick_in_iso_utc(plain_app: acidic.App) -> None:
    schedule = plain_app.schedule("nightly", worker_app.Stamp(n=1), cron="0 3 * * *")
    berlin = dt.datetime(2026, 12, 3, 4, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert schedule.key(berlin) == "schedule:nightly:2026-12-03T03:00:00Z"


# -- ticks ---------------------------------------------------------------------------------


def test_every__ticks_are_aligned_to_the_epoch(plain_app: acidic.App) -> None:
    schedule = plain_app.schedule("s", worker_app.Stamp(n=1), every=dt.timedelta(minutes=15))
    now = at("2026-12-03T10:07:30")
    assert schedule.latest(now, 2) == [at("2026-12-03T09:45:00"), at("2026-12-03T10:00:00")]
    assert schedule.next_after(now) == at("2026-12-03T10:15:00")
    assert schedule.next_after(at("2026-12-03T10:15:00")) == at("2026-12-03T10:30:00")
    assert schedule.between(at("2026-12-03T10:00:00"), at("2026-12-03T10:30:00")) == [
        at("2026-12-03T10:15:00"),
        at("2026-12-03T10:30:00"),
    ]


def test_cron__is_evaluated_in_its_timezone_across_a_dst_change(plain_app: acidic.App) -> None:
    schedule = plain_app.schedule(
        "s", worker_app.Stamp(n=1), cron="0 9 * * *", timezone="Europe/Berlin"
    )
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer (DST from 29 March).
    ticks = schedule.between(at("2026-03-27T12:00:00"), at("2026-03-30T12:00:00"))
    assert ticks == [
        at("2026-03-28T08:00:00"),
        at("2026-03-29T07:00:00"),
        at("2026-03-30T07:00:00"),
    ]
    assert schedule.latest(at("2026-03-29T07:00:00"), 1) == [at("2026-03-29T07:00:00")]
    assert schedule.next_after(at("2026-03-29T07:00:00")) == at("2026-03-30T07:00:00")


# -- one run per tick, on the databases ---------------------------------------------------


def tick_runs(application: acidic.App, name: str = "ticks") -> list[str]:
    with application.engine.connect() as conn:
        keys = conn.execute(
            sa.select(runs.c.idempotency_key).where(
                runs.c.idempotency_key.like(f"schedule:{name}:%")
            )
        ).scalars()
        return sorted(keys)


def test_scheduler__two_workers_on_the_same_ticks_leave_one_run_each(
    database_url: str,
) -> None:
    with worker_app.migrated(database_url, flow_app.make_app) as application:
        schedule = application.schedules["ticks"]
        stopped = threading.Event()
        first = Scheduler(application.manager, [schedule], stopped)
        second = Scheduler(application.manager, [schedule], stopped)
        start = at("2026-12-03T10:00:00.400000")
        for scheduler in (first, second):  # each starts: the latest catch_up (1) tick
            assert scheduler.tick(start) == 1
        for seconds in (1, 2, 3):
            for scheduler in (first, second):
                scheduler.tick(start + dt.timedelta(seconds=seconds))
        assert tick_runs(application) == [
            f"schedule:ticks:2026-12-03T10:00:0{n}Z" for n in range(4)
        ]
        run = application.get("schedule:ticks:2026-12-03T10:00:02Z")
        assert run is not None
        assert run.status == acidic.RunStatus.PENDING
        assert run.args == {"n": 0}


def test_scheduler__after_downtime_runs_at_most_catch_up_missed_ticks(database_url: str) -> None:
    def make(url: str) -> acidic.App:
        return flow_app.make_app(url, every=1, catch_up=3)

    with worker_app.migrated(database_url, make) as application:
        schedule = application.schedules["ticks"]
        stopped = threading.Event()
        start = at("2026-12-03T10:00:00")
        Scheduler(application.manager, [schedule], stopped).tick(start)
        # 30 s with no worker, then a new one: the latest 3 ticks only.
        Scheduler(application.manager, [schedule], stopped).tick(start + dt.timedelta(seconds=30))
        assert tick_runs(application) == [
            "schedule:ticks:2026-12-03T09:59:58Z",
            "schedule:ticks:2026-12-03T09:59:59Z",
            "schedule:ticks:2026-12-03T10:00:00Z",
            "schedule:ticks:2026-12-03T10:00:28Z",
            "schedule:ticks:2026-12-03T10:00:29Z",
            "schedule:ticks:2026-12-03T10:00:30Z",
        ]


def test_scheduler__a_running_worker_misses_no_tick_when_a_pass_is_late(
    database_url: str,
) -> None:
    with worker_app.migrated(database_url, flow_app.make_app) as application:
        scheduler = Scheduler(
            application.manager, [application.schedules["ticks"]], threading.Event()
        )
        start = at("2026-12-03T10:00:00.500000")
        scheduler.tick(start)
        scheduler.tick(start + dt.timedelta(seconds=5))  # five ticks in one pass
        assert len(tick_runs(application)) == 6


# -- real worker processes ------------------------------------------------------------------


def tick_times(application: acidic.App) -> list[dt.datetime]:
    prefix = "schedule:ticks:"
    return [
        dt.datetime.fromisoformat(key.removeprefix(prefix).replace("Z", "+00:00"))
        for key in tick_runs(application)
    ]


def run_schedule_storm(
    url: str, tmp_path: Path, *, first: float, gap: float, second: float
) -> None:
    """Three worker processes serve a one-second schedule for ``first`` seconds, all stop
    for ``gap`` seconds, three start again for ``second`` seconds: every tick while a
    worker ran has exactly one run, executed once; of the ticks during the stop, at most
    ``catch_up`` (1) ran."""
    with worker_app.migrated(url, flow_app.make_app) as application:
        windows = []
        for round_, seconds in enumerate((first, second)):
            spawned = application.manager.clock()
            with worker_processes() as workers:
                for n in range(3):
                    log = tmp_path / f"worker-{round_}-{n}.log"
                    workers.append(
                        spawn_worker(
                            url, log, poll_interval=0.2, app_ref="tests.support.flow_app:app"
                        )
                    )
                for worker in workers:
                    worker.wait_started()
                began = application.manager.clock()
                time.sleep(seconds)
                ended = application.manager.clock()
                for worker in workers:
                    worker.signal_group(15)
                for worker in workers:
                    assert worker.wait(30) == 0, worker.output()
            windows.append((spawned, began, ended, application.manager.clock()))
            if round_ == 0:
                time.sleep(gap)
        ticks = tick_times(application)
        # Every whole second while all three workers ran has its tick...
        for _, began, ended, _ in windows:
            expected = {
                began.replace(microsecond=0) + dt.timedelta(seconds=s)
                for s in range(1, int((ended - began).total_seconds()))
            }
            assert expected <= set(ticks), sorted(expected - set(ticks))
        # ... of those while none ran, at most catch_up (1).
        missed = [t for t in ticks if windows[0][3] < t < windows[1][0]]
        assert len(missed) <= 1, missed
        # Exactly one run per tick key (the key is unique), each executed exactly once
        # (a tick enqueued while the last workers were stopping waits for a worker).
        application.drain()
        worker_app.wait_for(
            lambda: worker_app.status_counts(application).get("succeeded", 0) == len(ticks),
            "every tick's run to succeed",
            timeout=10,
            detail=lambda: worker_app.status_counts(application),
        )
        executed: dict[str, int] = {}
        for row in worker_app.effects(application):
            executed[row["run_key"]] = executed.get(row["run_key"], 0) + 1
        assert set(executed) == set(tick_runs(application))
        assert set(executed.values()) == {1}


@pytest.mark.slow
def test_schedule__three_workers_make_exactly_one_run_per_tick(
    database_url: str, tmp_path: Path
) -> None:
    # A stop of three seconds misses two or three ticks, of which at most one runs.
    run_schedule_storm(database_url, tmp_path, first=4, gap=3, second=3)


@pytest.mark.storm
@pytest.mark.timeout(400)  # two minutes, a stop of thirty seconds, ten more, and start-ups
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_schedule__three_workers_for_two_minutes_and_a_stop_of_thirty_seconds(
    database_url: str, tmp_path: Path
) -> None:
    run_schedule_storm(database_url, tmp_path, first=120, gap=30, second=10)


# -- acidic schedules -----------------------------------------------------------------------


def schedules_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return invoke_cli(
        "schedules",
        "--app",
        "tests.support.flow_app:app",
        *args,
        cwd=worker_app.ROOT,
        env={worker_app.URL_ENV: url},
    )


def test_schedules_command__lists_last_and_next_tick_with_the_tick_run(database_url: str) -> None:
    with worker_app.migrated(database_url, flow_app.make_app) as application:
        listed = schedules_cli(database_url, "--json")
        assert listed.returncode == 0, listed.stderr
        (before,) = json.loads(listed.stdout)
        assert before["last_status"] is None  # no worker enqueued it yet
        Scheduler(
            application.manager, list(application.schedules.values()), threading.Event()
        ).tick(application.manager.clock())
        listed = schedules_cli(database_url, "--json")
        (row,) = json.loads(listed.stdout)
        last = dt.datetime.fromisoformat(row["last_tick"])
        assert row["last_key"] == f"schedule:ticks:{last:%Y-%m-%dT%H:%M:%SZ}"
        assert row["last_status"] in ("pending", None)  # None: the second turned meanwhile
        assert dt.datetime.fromisoformat(row["next_tick"]) == last + dt.timedelta(seconds=1)
        assert (row["name"], row["job"], row["every_s"], row["cron"], row["catch_up"]) == (
            "ticks",
            "Stamp",
            1,
            None,
            1,
        )
        shown = schedules_cli(database_url)
        assert shown.returncode == 0
        assert "every 1s" in shown.stdout


def test_scheduler__skips_a_tick_enqueued_with_other_arguments_and_goes_on(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with worker_app.migrated(database_url, flow_app.make_app) as application:
        schedule = application.schedules["ticks"]
        start = at("2026-12-03T10:00:00")
        # A previous deploy scheduled the same tick with other arguments.
        application.enqueue(
            worker_app.Stamp(n=5), key=schedule.key(start + dt.timedelta(seconds=1))
        )
        scheduler = Scheduler(application.manager, [schedule], threading.Event())
        scheduler.tick(start)
        assert scheduler.tick(start + dt.timedelta(seconds=3)) == 2
        assert "tick not enqueued" in caplog.text
        assert len(tick_runs(application)) == 4
        later = application.get(schedule.key(start + dt.timedelta(seconds=3)))
        assert later is not None
        assert later.args == {"n": 0}
