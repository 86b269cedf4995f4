"""The instrumentation port: what the engine and its adapters tell an observer.

The engine calls these hooks at fixed points (a run attempt starts and ends, a step
starts and ends, a run is enqueued or claimed, taken over, loses its lock) and knows
nothing of what listens. :class:`Observer` itself does nothing: it is the default, so
an App without telemetry pays a method call per hook. ``acidic._telemetry`` implements
it on the OpenTelemetry API (traces, metrics) when ``acidic[otel]`` is installed.

Every ``*_started`` hook returns an opaque handle that the matching ``*_ended`` hook
receives; a hook must never raise (an observer's failure must not fail a run), and a
started hook and its ended hook run in the same thread or task (an observer may make
the started span current, as a context variable, until the end).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from .._storage import RunRow

__all__ = ["NO_OBSERVER", "Observer", "current_executor"]

#: Who executes the run attempt starting in this context: ``"inline"`` (``app.run``),
#: ``"acidic"`` (acidic's worker), or the name of another executor, which sets it
#: around :meth:`Manager.execute_claimed`.
current_executor: ContextVar[str] = ContextVar("acidic_current_executor", default="inline")


class Observer:
    """The instrumentation port; every hook of this base class does nothing."""

    __slots__ = ()

    #: False only for this do-nothing base: callers may skip work that only feeds hooks.
    active = False

    # -- enqueueing -------------------------------------------------------------------

    def enqueue_started(self, job: str, queue: str) -> object:
        """``app.enqueue`` of ``job`` to ``queue`` begins."""
        return None

    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` of the current trace context, to store with a run
        being enqueued (None: nothing to continue)."""
        return None

    def enqueue_ended(
        self, handle: object, row: RunRow | None, error: BaseException | None
    ) -> None:
        """The enqueue of :meth:`enqueue_started` ended: ``row`` stored (or found), or
        ``error`` raised."""

    # -- executing --------------------------------------------------------------------

    def claimed(self, row: RunRow) -> None:
        """An executor claimed a due run (``row`` as claimed)."""

    def takeover(self, row: RunRow) -> None:
        """A run whose owner's lock had gone stale was claimed by a new owner."""

    def run_started(self, row: RunRow, attempt: int, step: str) -> object:
        """A run attempt begins (at ``step``, its recovery point), in
        :data:`current_executor`."""
        return None

    def run_ended(
        self, handle: object, row: RunRow, outcome: str, error: BaseException | None
    ) -> None:
        """The attempt of :meth:`run_started` ended: ``outcome`` is the run's status
        after it (``succeeded``, ``failed``, ``scheduled``, ``halted``, ``pending``
        when released at a stop, ``cancelled``), or ``lock_lost``; ``error`` is what
        the attempt raised, if anything."""

    def step_started(self, run: object, row: RunRow, step: str, attempt: int) -> object:
        """A step of the attempt ``run`` (a :meth:`run_started` handle) begins."""
        return None

    def step_ended(
        self,
        handle: object,
        outcome: str,
        status: str | None,
        error: BaseException | None,
        seconds: float,
    ) -> None:
        """The step of :meth:`step_started` ended after ``seconds``: ``outcome``
        ``succeeded`` or ``errored``; ``status`` is the run's status after it (None while
        it goes on running), ``error`` the step's exception."""

    def lock_lost(self, job: str | None, key: str) -> None:
        """An owner found its lock on a run taken over (a write was refused, or the
        heartbeat could not renew it)."""

    # -- workers ----------------------------------------------------------------------

    def worker_started(
        self, app: object, queues: tuple[str, ...], executors: int, busy: Callable[[], int]
    ) -> object:
        """A worker of ``app`` serving ``queues`` with ``executors`` slots starts;
        ``busy()`` says how many are executing a run."""
        return None

    def worker_stopped(self, handle: object) -> None:
        """The worker of :meth:`worker_started` stopped."""

    # -- HTTP idempotency records -----------------------------------------------------

    def http_started(self, method: str, path: str) -> object:
        """The idempotency middleware begins deciding on a request with a key."""
        return None

    def http_ended(self, handle: object, decision: str, key: str, status: int | None) -> None:
        """The decision of :meth:`http_started`: ``record`` (the handler runs and its
        response is recorded), ``replay``, ``conflict`` (409: in flight), ``mismatch``
        (422: other request), ``unavailable`` (503); ``status`` the HTTP status sent
        instead of running the handler (None for ``record``)."""


#: The default observer: does nothing.
NO_OBSERVER = Observer()
