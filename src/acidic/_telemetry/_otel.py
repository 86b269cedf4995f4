"""The engine's observer on the OpenTelemetry API: spans and metrics.

Only ``opentelemetry-api`` is used: until the application configures an SDK, every
tracer and meter here is the API's no-op proxy (spans not recorded, measurements
dropped). Span tree of one run (names fixed by CONTRACT.md, attributes ``acidic.*``)::

    acidic.enqueue <job>        PRODUCER  (app.enqueue; its context is stored with the run)
    └── acidic.run <job>        CONSUMER  (one attempt, in a worker; INTERNAL inline)
        ├── acidic.step <step>  INTERNAL
        └── acidic.step <step>

The attempt's span is a child of the context stored at enqueue (the W3C
``traceparent``), so a request and the jobs it enqueued share one trace; an inline
run is a child of the caller's current span.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .._engine import Observer, RunRow, current_executor
from .._run import ENDED

__all__ = ["OtelObserver"]

_PROPAGATOR = TraceContextTextMapPropagator()
#: Seconds: from a fast step to a long external call.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: Seconds a queue measurement is reused: the depth and age gauges read one query.
_QUEUE_CACHE = 1.0


def _version() -> str:
    try:
        return version("acidic")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "0"


@dataclass(slots=True)
class _Open:
    """A span this observer started, and the context token that made it current."""

    span: Span | None  # None: no SDK was configured when it started
    token: object | None
    job: str
    name: str = ""
    #: Whether measurements go anywhere (decided once per attempt: reading the global
    #: providers costs a look at os.environ each time).
    metering: bool = True


@dataclass(slots=True)
class _Watched:
    app: Any
    workers: int = 0


class OtelObserver(Observer):
    """Reports runs as OpenTelemetry spans and metrics (see the module docstring and
    docs/observability.md for the names)."""

    active = True

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        # Without providers, the global ones: the API's proxies until an SDK is set.
        # While they are, the hooks skip spans and measurements altogether (the proxies
        # would drop them), so that the API without an SDK costs next to nothing.
        self._tracer_proxy = _proxy(
            tracer_provider, trace.get_tracer_provider(), _global_tracer_provider
        )
        self._meter_proxy = _proxy(
            meter_provider, metrics.get_meter_provider(), _global_meter_provider
        )
        tracer_version = _version()
        self.tracer = trace.get_tracer("acidic", tracer_version, tracer_provider)
        meter = metrics.get_meter("acidic", tracer_version, meter_provider)
        self.enqueued = meter.create_counter(
            "acidic.runs.enqueued", "{run}", "app.enqueue calls, by job and queue"
        )
        self.finished = meter.create_counter(
            "acidic.runs.finished", "{run}", "runs that ended for good, by job and status"
        )
        self.attempts = meter.create_counter(
            "acidic.attempts", "{attempt}", "run attempts that ended, by job and outcome"
        )
        self.retries = meter.create_counter(
            "acidic.retries", "{retry}", "retries scheduled after a step's error, by job"
        )
        self.takeovers = meter.create_counter(
            "acidic.takeovers", "{run}", "runs claimed after their owner's lock went stale"
        )
        self.locks_lost = meter.create_counter(
            "acidic.locks.lost", "{run}", "owners that found their run taken over"
        )
        self.http = meter.create_counter(
            "acidic.http.requests", "{request}", "idempotency middleware decisions"
        )
        self.step_duration = meter.create_histogram(
            "acidic.step.duration",
            "s",
            "time a step took, its commit included, by job, step and outcome",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.start_latency = meter.create_histogram(
            "acidic.enqueue_to_start",
            "s",
            "from app.enqueue to the first claim by an executor, by job and queue",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        meter.create_observable_gauge(
            "acidic.queue.depth",
            [self._depths],
            "{run}",
            "pending and scheduled runs due now, by queue",
        )
        meter.create_observable_gauge(
            "acidic.queue.oldest_due_age",
            [self._ages],
            "s",
            "how long the earliest due run of a queue has waited, by queue",
        )
        meter.create_observable_gauge(
            "acidic.worker.executors",
            [self._executors],
            "{executor}",
            "executor slots of this process's workers, by state (busy, idle)",
        )
        self._lock = threading.Lock()
        self._workers: dict[int, tuple[int, Callable[[], int]]] = {}
        self._watched: weakref.WeakKeyDictionary[Any, _Watched] = weakref.WeakKeyDictionary()
        self._queue_reading: tuple[float, list[tuple[str, int, float]]] = (0.0, [])

    # -- enqueueing -------------------------------------------------------------------

    def _tracing(self) -> bool:
        """Whether spans are recorded: an SDK's tracer provider is (or became) global."""
        if self._tracer_proxy is None:
            return True
        if _global_tracer_provider() is None:
            return False
        self._tracer_proxy = None  # set once for the process: no need to look again
        return True

    def _metering(self) -> bool:
        if self._meter_proxy is None:
            return True
        if _global_meter_provider() is None:
            return False
        self._meter_proxy = None
        return True

    def enqueue_started(self, job: str, queue: str) -> object:
        if not self._tracing():
            return _Open(None, None, job, queue)
        span = self.tracer.start_span(
            f"acidic.enqueue {job}",
            kind=SpanKind.PRODUCER,
            attributes={
                "acidic.job": job,
                "acidic.queue": queue,
                "messaging.system": "acidic",
                "messaging.operation.type": "send",
                "messaging.operation.name": "enqueue",
                "messaging.destination.name": queue,
            },
        )
        return _Open(span, _attach(span), job, queue)

    def traceparent(self) -> str | None:
        if not self._tracing():
            return None
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get("traceparent")

    def enqueue_ended(
        self, handle: object, row: RunRow | None, error: BaseException | None
    ) -> None:
        assert isinstance(handle, _Open)
        span = handle.span
        if row is not None:
            if self._metering():
                self.enqueued.add(1, {"job": handle.job, "queue": handle.name})
            if span is not None and span.is_recording():
                span.set_attribute("acidic.key", row.key)
                span.set_attribute("messaging.message.id", row.key)
        _end(handle, error)

    # -- executing --------------------------------------------------------------------

    def claimed(self, row: RunRow) -> None:
        if row.attempts == 1 and self._metering() and row.last_run_at is not None:
            waited = (row.last_run_at - row.created_at).total_seconds()
            self.start_latency.record(max(waited, 0.0), {"job": row.job, "queue": row.queue or ""})

    def takeover(self, row: RunRow) -> None:
        if self._metering():
            self.takeovers.add(1, {"job": row.job})

    def run_started(self, row: RunRow, attempt: int, step: str) -> object:
        metering = self._metering()
        if not self._tracing():
            return _Open(None, None, row.job, metering=True) if metering else _OFF
        executor = current_executor.get()
        attributes: dict[str, Any] = {
            "acidic.key": row.key,
            "acidic.job": row.job,
            "acidic.attempt": attempt,
            "acidic.step": step,
            "acidic.executor": executor,
        }
        if row.queue is not None:  # None: an inline run that never parked
            attributes["acidic.queue"] = row.queue
        parent = None
        kind = SpanKind.INTERNAL
        if executor != "inline":
            # A run taken from the queue: a messaging "process" span, continuing the
            # trace of the code that enqueued it.
            kind = SpanKind.CONSUMER
            attributes.update(
                {
                    "messaging.system": "acidic",
                    "messaging.operation.type": "process",
                    "messaging.operation.name": "run",
                    "messaging.destination.name": row.queue or "",
                    "messaging.message.id": row.key,
                }
            )
            if row.traceparent:
                parent = _PROPAGATOR.extract({"traceparent": row.traceparent})
        span = self.tracer.start_span(
            f"acidic.run {row.job}", context=parent, kind=kind, attributes=attributes
        )
        return _Open(span, _attach(span), row.job, metering=metering)

    def run_ended(
        self, handle: object, row: RunRow, outcome: str, error: BaseException | None
    ) -> None:
        assert isinstance(handle, _Open)
        job = row.job
        if handle.metering:
            self.attempts.add(1, {"job": job, "outcome": outcome})
            if outcome in ENDED:
                self.finished.add(1, {"job": job, "status": outcome})
            elif outcome == "scheduled" and error is not None:
                self.retries.add(1, {"job": job})
        span = handle.span
        if span is not None and span.is_recording():
            span.set_attribute("acidic.outcome", outcome)
            if error is not None and outcome != "cancelled":
                # The exception itself is recorded on the step that raised it.
                span.set_status(Status(StatusCode.ERROR, _describe(error)))
        _end(handle, None)

    def step_started(self, run: object, row: RunRow, step: str, attempt: int) -> object:
        assert isinstance(run, _Open)
        if run is _OFF:
            return _OFF
        if run.span is None:  # no SDK when the attempt started: none for its steps
            return _Open(None, None, row.job, step, run.metering)
        span = self.tracer.start_span(
            f"acidic.step {step}",
            attributes={
                "acidic.key": row.key,
                "acidic.job": row.job,
                "acidic.step": step,
                "acidic.attempt": attempt,
            },
        )
        return _Open(span, _attach(span), row.job, step, run.metering)

    def step_ended(
        self,
        handle: object,
        outcome: str,
        status: str | None,
        error: BaseException | None,
        seconds: float,
    ) -> None:
        assert isinstance(handle, _Open)
        if handle.metering:
            self.step_duration.record(
                seconds, {"job": handle.job, "step": handle.name, "outcome": outcome}
            )
        span = handle.span
        if span is not None and span.is_recording():
            span.set_attribute("acidic.outcome", status or outcome)
        _end(handle, error)

    def lock_lost(self, job: str | None, key: str) -> None:
        if self._metering():
            self.locks_lost.add(1, {"job": job or ""})

    # -- workers and queues -----------------------------------------------------------

    def worker_started(
        self, app: object, queues: tuple[str, ...], executors: int, busy: Callable[[], int]
    ) -> object:
        handle = object()
        with self._lock:
            self._workers[id(handle)] = (executors, busy)
            self._watched.setdefault(app, _Watched(app)).workers += 1
        return (handle, app)

    def worker_stopped(self, handle: object) -> None:
        assert isinstance(handle, tuple)
        token, app = handle
        with self._lock:
            self._workers.pop(id(token), None)
            watched = self._watched.get(app)
            if watched is not None:
                watched.workers -= 1
                if watched.workers <= 0:
                    del self._watched[app]

    def watch(self, app: object) -> None:
        """Report the queue depth and age of ``app`` while it lives (the dashboard's
        process, which runs no worker)."""
        with self._lock:
            self._watched.setdefault(app, _Watched(app)).workers += 1

    def _queues(self) -> list[tuple[str, int, float]]:
        """(queue, due runs, age of the earliest) of the watched Apps, read at most once
        a second."""
        at, reading = self._queue_reading
        if time.monotonic() - at < _QUEUE_CACHE:
            return reading
        with self._lock:
            apps = [w.app for w in self._watched.values()]
        reading = []
        for app in apps:
            manager = app.manager
            now: dt.datetime = manager.clock()
            try:
                due = manager.queries.due(now)
            except Exception:  # noqa: S112 - a scrape must not fail on one database
                continue
            reading.extend((q, n, max((now - oldest).total_seconds(), 0.0)) for q, n, oldest in due)
            # Queues with nothing due read 0, not "no data" (a Grafana panel drops to 0).
            seen = {q for q, _, _ in due}
            reading.extend((q, 0, 0.0) for q in app.queues if q not in seen)
        self._queue_reading = (time.monotonic(), reading)
        return reading

    def _depths(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"queue": q}) for q, n, _ in self._queues()]

    def _ages(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(age, {"queue": q}) for q, _, age in self._queues()]

    def _executors(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            workers = list(self._workers.values())
        if not workers:
            return []
        busy = sum(min(read(), size) for size, read in workers)
        total = sum(size for size, _ in workers)
        return [
            Observation(busy, {"state": "busy"}),
            Observation(total - busy, {"state": "idle"}),
        ]

    # -- HTTP idempotency records -----------------------------------------------------

    def http_started(self, method: str, path: str) -> object:
        if not self._tracing():
            return _Open(None, None, "")
        span = self.tracer.start_span(
            "acidic.http",
            attributes={"http.request.method": method, "url.path": path},
        )
        return _Open(span, None, "")

    def http_ended(self, handle: object, decision: str, key: str, status: int | None) -> None:
        assert isinstance(handle, _Open)
        if self._metering():
            self.http.add(1, {"decision": decision})
        span = handle.span
        if span is None:
            return
        if span.is_recording():
            span.update_name(f"acidic.http {decision}")
            span.set_attribute("acidic.key", key)
            span.set_attribute("acidic.http.decision", decision)
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if decision == "unavailable":
                span.set_status(Status(StatusCode.ERROR, "idempotency store unavailable"))
        span.end()


#: The handle of an attempt and its steps while no SDK is configured: nothing to do.
_OFF = _Open(None, None, "", metering=False)


def _proxy(
    given: object | None, global_provider: object, reader: Callable[[], object]
) -> object | None:
    """The API's proxy provider that is global now, to tell later whether an SDK
    replaced it; None when spans or measurements always go somewhere (a provider was
    given, or an SDK's is global already, or the API's internals are not as known)."""
    if given is not None or reader is _unknown:
        return None
    proxies = ("ProxyTracerProvider", "_ProxyMeterProvider")  # the API's placeholders
    return global_provider if type(global_provider).__name__ in proxies else None


def _unknown() -> object:
    return object()


def _global_reader(module: object, name: str, env: str) -> Callable[[], object]:
    """Reads the provider an application set globally (None while none is), without
    the public getter's look at ``os.environ`` (microseconds a call). A provider named
    by the environment variable ``env`` counts as set. If the API keeps its global
    elsewhere than this version does, :func:`_unknown` (always set) is returned."""
    if not hasattr(module, name):
        return _unknown
    if env in os.environ:
        return _unknown

    def read() -> object:
        return getattr(module, name)

    return read


_global_tracer_provider = _global_reader(trace, "_TRACER_PROVIDER", "OTEL_PYTHON_TRACER_PROVIDER")
_global_meter_provider = _global_reader(
    metrics_internal, "_METER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER"
)


def _attach(span: Span) -> object | None:
    """Make ``span`` current until it ends (only a span that carries a trace: the
    API's no-op span changes nothing, so it is not worth a context switch)."""
    if not span.get_span_context().is_valid:
        return None
    return otel_context.attach(trace.set_span_in_context(span))


def _end(handle: _Open, error: BaseException | None) -> None:
    span = handle.span
    if span is None:
        return
    if handle.token is not None:
        otel_context.detach(handle.token)  # type: ignore[arg-type]  # attach's token
    if error is not None and span.is_recording():
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, _describe(error)))
    span.end()


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
