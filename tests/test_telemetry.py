"""Telemetry: the spans and metrics a ride produces, read with the OpenTelemetry SDK's
in-memory exporters (docs/observability.md).

Each test gives its App an observer on providers of its own (no global provider is
set, so other tests in the process are not traced).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import acidic
from acidic._engine import Observer
from acidic._engine._manager import Claim
from acidic._telemetry._otel import OtelObserver
from acidic.testing import Clock
from tests.support.jobs import create_tables, get_run

RIDE_STEPS = ["create_ride", "charge", "send_receipt"]


class Ride(acidic.Job):
    """Three steps, one of them non-transactional, like the reference ride."""

    user_id: int

    @acidic.step
    def create_ride(self, tx: sa.Connection) -> None:
        self.ctx["ride"] = self.user_id

    @acidic.step(transactional=False)
    def charge(self) -> None:
        self.ctx["charge"] = f"ch_{self.user_id}"

    @acidic.step
    def send_receipt(self, tx: sa.Connection) -> acidic.Response:
        return acidic.Response(self.ctx["charge"])


class Broken(acidic.Job):
    """Fails in its second step; ``max_attempts`` 2 gives it one retry."""

    max_attempts = 2
    n: int

    def backoff(self, attempt: int) -> float:
        return 1.0

    @acidic.step
    def first(self, tx: sa.Connection) -> None:
        pass

    @acidic.step
    def second(self, tx: sa.Connection) -> None:
        raise ValueError(f"card {self.n} declined")


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == name]

    def points(self, metric: str) -> list[Any]:
        """The data points of ``metric`` (its OpenTelemetry name) collected now."""
        data = self.metrics.get_metrics_data()
        assert data is not None
        found: list[Any] = []
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        found.extend(m.data.data_points)
        return found

    def value(self, metric: str, **labels: Any) -> float:
        """The sum (counter, gauge) or count (histogram) of ``metric``'s points with
        ``labels``."""
        total = 0.0
        for point in self.points(metric):
            if all(point.attributes.get(k) == v for k, v in labels.items()):
                counted = getattr(point, "count", None)
                total += counted if counted is not None else point.value
        return total


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(spans, reader, tracer_provider, meter_provider)
    meter_provider.shutdown()
    tracer_provider.shutdown()


@pytest.fixture
def traced(database_url: str, telemetry: Telemetry) -> Iterator[acidic.App]:
    """A migrated App with Ride and Broken, reporting to ``telemetry``, on a test clock."""
    app = acidic.App(database_url, clock=Clock(), queues=("default", "mail"))
    app.manager.observer = OtelObserver(telemetry.tracer_provider, telemetry.meter_provider)
    try:
        app.migrate()
        app.job(name="ride")(Ride)
        app.job(name="broken")(Broken)
        create_tables(app.engine)
        yield app
    finally:
        app.close()


def _key() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


def _children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[str]:
    return [
        s.name
        for s in sorted(spans, key=lambda s: s.start_time or 0)
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def test_inline_ride__a_run_span_under_the_caller_with_a_span_per_step(
    traced: acidic.App, telemetry: Telemetry
) -> None:
    key = _key()
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        assert traced.run(Ride(user_id=7), key=key) == "ch_7"
    spans = telemetry.finished()
    (run,) = telemetry.named("acidic.run ride")
    assert run.parent is not None
    assert run.parent.span_id == request.get_span_context().span_id
    assert run.context.trace_id == request.get_span_context().trace_id
    assert run.kind is SpanKind.INTERNAL
    assert _children(spans, run) == [f"acidic.step {s}" for s in RIDE_STEPS]
    assert run.attributes is not None
    assert dict(run.attributes) == {
        "acidic.key": key,
        "acidic.job": "ride",
        "acidic.attempt": 1,
        "acidic.step": "create_ride",
        "acidic.executor": "inline",
        "acidic.outcome": "succeeded",
    }
    step = telemetry.named("acidic.step charge")[0]
    assert step.attributes is not None
    assert step.attributes["acidic.step"] == "charge"
    assert step.attributes["acidic.key"] == key
    assert step.attributes["acidic.attempt"] == 1
    assert step.attributes["acidic.outcome"] == "succeeded"
    assert telemetry.named("acidic.step send_receipt")[0].attributes == {
        "acidic.key": key,
        "acidic.job": "ride",
        "acidic.step": "send_receipt",
        "acidic.attempt": 1,
        "acidic.outcome": "succeeded",
    }
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)


def test_enqueued_ride__the_worker_continues_the_enqueuers_trace(
    traced: acidic.App, telemetry: Telemetry
) -> None:
    """The traceparent stored at enqueue is the parent of the worker's run span."""
    key = _key()
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        traced.enqueue(Ride(user_id=3), key=key, queue="mail")
    (enqueue,) = telemetry.named("acidic.enqueue ride")
    assert enqueue.kind is SpanKind.PRODUCER
    assert enqueue.parent is not None
    assert enqueue.parent.span_id == request.get_span_context().span_id
    assert enqueue.attributes is not None
    assert enqueue.attributes["messaging.destination.name"] == "mail"
    assert enqueue.attributes["acidic.key"] == key
    stored = traced.manager.find(key)
    assert stored is not None
    assert stored.traceparent is not None
    assert stored.traceparent.startswith(
        f"00-{enqueue.context.trace_id:032x}-{enqueue.context.span_id:016x}-"
    )

    # A real worker, in a thread of this process (no span is current there).
    worker = traced.worker(poll_interval=0.05)
    thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
    thread.start()
    try:
        end = time.monotonic() + 30
        while get_run(traced, key).status is not acidic.RunStatus.SUCCEEDED:
            assert time.monotonic() < end, get_run(traced, key)
            time.sleep(0.02)
    finally:
        worker.stop()
        thread.join(30)
    (run,) = telemetry.named("acidic.run ride")
    assert run.kind is SpanKind.CONSUMER
    assert run.parent is not None
    assert run.parent.span_id == enqueue.context.span_id
    assert run.parent.is_remote
    assert run.context.trace_id == request.get_span_context().trace_id
    assert run.attributes is not None
    assert run.attributes["acidic.executor"] == "acidic"
    assert run.attributes["acidic.queue"] == "mail"
    assert run.attributes["messaging.operation.type"] == "process"
    assert run.attributes["messaging.message.id"] == key
    assert _children(telemetry.finished(), run) == [f"acidic.step {s}" for s in RIDE_STEPS]


def test_failed_step__records_the_exception_with_status_error(
    traced: acidic.App, telemetry: Telemetry
) -> None:
    key = _key()
    with pytest.raises(ValueError, match="card 1 declined"):
        traced.run(Broken(n=1), key=key)
    (step,) = telemetry.named("acidic.step second")
    assert step.status.status_code is StatusCode.ERROR
    assert step.status.description == "ValueError: card 1 declined"
    (event,) = [e for e in step.events if e.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "card 1 declined"
    assert step.attributes is not None
    # Inline runs fail at once (the caller sees the error); a worker's would retry.
    assert step.attributes["acidic.outcome"] == "failed"
    (run,) = telemetry.named("acidic.run broken")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes is not None
    assert run.attributes["acidic.outcome"] == "failed"
    assert telemetry.named("acidic.step first")[0].status.status_code is StatusCode.UNSET

    # Running the key again resumes at the failed step: a second attempt's spans.
    with pytest.raises(ValueError, match="card 1 declined"):
        traced.run(Broken(n=1), key=key)
    last = telemetry.named("acidic.run broken")[-1]
    assert last.attributes is not None
    assert last.attributes["acidic.attempt"] == 2
    assert last.attributes["acidic.step"] == "second"
    assert _children(telemetry.finished(), last) == ["acidic.step second"]


def test_metrics__move_as_the_runs_do(traced: acidic.App, telemetry: Telemetry) -> None:
    for n in range(3):
        traced.run(Ride(user_id=n), key=_key())
    for n in range(2):
        traced.enqueue(Ride(user_id=10 + n), key=_key())
    traced.enqueue(Broken(n=5), key=_key(), queue="mail")

    # Waiting runs: depth and age, for an App a process watches (workers do).
    traced.manager.observer.watch(traced)  # type: ignore[attr-defined]
    assert telemetry.value("acidic.queue.depth", queue="default") == 2
    assert telemetry.value("acidic.queue.depth", queue="mail") == 1
    clock = traced.manager.clock
    assert isinstance(clock, Clock)
    clock.advance(30)
    time.sleep(1.1)  # the queue reading is reused for a second
    assert telemetry.value("acidic.queue.oldest_due_age", queue="default") == 30

    assert traced.drain() == 3  # two rides; Broken fails and is scheduled for a retry
    clock.advance(5)
    assert traced.drain() == 1  # Broken's retry: failed for good

    assert telemetry.value("acidic.runs.finished", job="ride", status="succeeded") == 5
    assert telemetry.value("acidic.runs.finished", job="broken", status="failed") == 1
    assert telemetry.value("acidic.retries", job="broken") == 1
    assert telemetry.value("acidic.attempts", job="broken", outcome="scheduled") == 1
    assert telemetry.value("acidic.runs.enqueued", job="ride", queue="default") == 2
    assert telemetry.value("acidic.step.duration", job="ride", step="charge") == 5
    assert telemetry.value("acidic.step.duration", job="broken", outcome="errored") == 2
    # Three runs taken from the queue for their first attempt (Broken's retry is not one).
    assert telemetry.value("acidic.enqueue_to_start") == 3
    latency = telemetry.points("acidic.enqueue_to_start")
    assert sum(p.sum for p in latency) == pytest.approx(3 * 30)  # the clock moved 30 s


def test_takeover_and_lost_lock__are_counted(traced: acidic.App, telemetry: Telemetry) -> None:
    """An owner that stalls past its lock timeout: the run is taken over, and the
    stalled owner's next write is refused."""
    key = _key()
    manager = traced.manager
    definition = Ride.__acidic_definition__
    job = Ride(user_id=1)
    stalled = manager.claim("ride", definition, key, definition.encode_args(job))
    assert isinstance(stalled, Claim)
    clock = manager.clock
    assert isinstance(clock, Clock)
    clock.advance(manager.lock_timeout + 1)
    assert traced.run(Ride(user_id=1), key=key) == "ch_1"  # takes the run over
    assert telemetry.value("acidic.takeovers", job="ride") == 1
    with pytest.raises(acidic.LockLostError):
        manager.execute(job, definition, stalled)
    assert telemetry.value("acidic.locks.lost", job="ride") == 1
    lost = telemetry.named("acidic.run ride")[-1]
    assert lost.attributes is not None
    assert lost.attributes["acidic.outcome"] == "lock_lost"


@pytest.mark.parametrize("queue", ["default", "limited"])
def test_takeover_by_a_workers_claim__is_counted_once(
    database_url: str, telemetry: Telemetry, queue: str
) -> None:
    """A worker's claim that takes a run whose owner's lock expired counts a takeover;
    a due run it claims beside it does not (the plain claim, and the limited claim of
    a queue with a concurrency limit)."""
    app = acidic.App(
        database_url, clock=Clock(), queues={"default": acidic.Queue(), "limited": acidic.Queue(3)}
    )
    app.manager.observer = OtelObserver(telemetry.tracer_provider, telemetry.meter_provider)
    try:
        app.migrate()
        app.job(name="ride")(Ride)
        manager = app.manager
        first, second = _key(), _key()
        app.enqueue(Ride(user_id=1), key=first, queue=queue)
        (stalled,) = manager.claim_due(queue, ["ride"], 1, owner="w-dead")
        assert (stalled.key, stalled.taken_over) == (first, False)
        app.enqueue(Ride(user_id=2), key=second, queue=queue)
        clock = manager.clock
        assert isinstance(clock, Clock)
        clock.advance(manager.lock_timeout + 1)

        claimed = manager.claim_due(queue, ["ride"], 5, owner="w-alive")

        assert {r.key: r.taken_over for r in claimed} == {first: True, second: False}
        assert telemetry.value("acidic.takeovers", job="ride") == 1
    finally:
        app.close()


def test_without_an_sdk__acidic_runs_and_stores_no_traceparent(database_url: str) -> None:
    """The API alone (no SDK configured): spans are no-ops, nothing is stored."""
    with acidic.App(database_url) as app:
        assert isinstance(app.manager.observer, OtelObserver)
        app.migrate()
        app.job(name="ride")(Ride)
        key = _key()
        app.enqueue(Ride(user_id=2), key=key)
        assert app.drain() == 1
        run = app.manager.find(key)
        assert run is not None
        assert run.traceparent is None
        assert run.status == "succeeded"


def test_telemetry_false__uses_the_do_nothing_observer(tmp_path: Any) -> None:
    with acidic.App(f"sqlite:///{tmp_path}/t.sqlite3", telemetry=False) as app:
        assert type(app.manager.observer) is Observer
