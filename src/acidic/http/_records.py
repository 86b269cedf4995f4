"""Idempotency records, kept as acidic runs, and the storage of responses in them.

Each key a caller sends is one run of the internal job ``acidic.http.request``, under
the request's record key (see ``_request``). The run's arguments are the request's
fingerprint, so a different request under the same key is refused as the manager
refuses other arguments (422); the run's lock is the "in flight" state (409); its
result is the stored response (replayed); a response that is not to be stored leaves
the run ``failed``, so that a retry claims it and runs the handler again. The CLI,
``app.get`` and ``app.prune`` see these runs like any other.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import threading
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa

from .._app import App
from .._encoding import dumps
from .._engine import Finished, Manager
from .._errors import (
    AcidicError,
    ArgumentMismatchError,
    KeyLockedError,
    RunCancelledError,
    SchemaVersionError,
    StorageError,
)
from .._job import Job, step
from .._run import RunError
from .._storage import Fence
from . import _expiry, _problems
from ._fingerprint import HEADER
from ._problems import Problem
from ._request import IdempotentRequest
from ._responses import StoredResponse, asks_retry, too_large

if TYPE_CHECKING:
    from ._policy import Idempotency

__all__ = ["RECORD_JOB", "Claimed", "Records", "Replay"]

log = logging.getLogger("acidic.http")

#: The registered name of the job whose runs are the idempotency records.
RECORD_JOB = "acidic.http.request"


@dataclass(frozen=True, slots=True)
class Replay:
    """The key's response is stored: send it again."""

    response: StoredResponse


@dataclass(slots=True)
class Claimed:
    """This request owns the key's record: run the handler, then finish or abandon."""

    request: IdempotentRequest
    run_id: int
    token: str
    attempt: int
    started: dt.datetime
    settled: bool = field(default=False)


class _RequestRecord(Job):
    """An idempotency record of acidic.http: one HTTP request under one key.

    Its arguments are the request's fingerprint. acidic.http claims and completes
    these runs itself; its step is never executed.
    """

    # A record handed to a worker by mistake (app.retry) fails at its first attempt.
    max_attempts = 1

    method: str
    path: str
    body_sha256: str
    caller_sha256: str

    @step(transactional=False)
    def respond(self) -> None:
        raise AcidicError(
            "runs of acidic.http.request are HTTP idempotency records: acidic.http completes "
            "them when the request's handler responds; they cannot be run or retried"
        )


#: The telemetry name of a problem answered instead of running the handler, by status.
_DECISIONS = {409: "conflict", 422: "mismatch", 503: "unavailable"}


class _Heartbeat:
    """Renews the locks of the records whose handlers are running, from one thread."""

    def __init__(self, app: App, interval: float, timeout: float) -> None:
        self._runs_manager = app.manager
        self._interval = interval
        self._timeout = timeout
        self._held: dict[int, str] = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, run_id: int, token: str) -> None:
        with self._mutex:
            self._held[run_id] = token
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._beat, name="acidic-http-heartbeat", daemon=True
                )
                self._thread.start()

    def release(self, run_id: int) -> None:
        with self._mutex:
            self._held.pop(run_id, None)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            with self._mutex:
                held = [(i, t, self._timeout) for i, t in self._held.items()]
            if not held:
                continue
            try:
                lost = self._runs_manager.renew_locks(held)
            except Exception:
                log.exception("renewing the locks of in-flight idempotent requests failed")
                continue
            for run_id in lost:
                log.warning("idempotency record id %s: lock no longer held", run_id)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)


def register(app: App) -> float:
    """Register the record job with ``app``; the lock timeout of its runs."""
    app.job(name=RECORD_JOB)(_RequestRecord)
    return app.manager.lock_timeout_for(_RequestRecord.__acidic_definition__)


class Records:
    """The records of one :class:`~acidic.http.Idempotency`: claiming a request's
    record, storing its response or releasing it without one. Every method blocks on
    the database: ASGI code calls those of :meth:`on_loop` in SQLAlchemy's greenlet
    bridge (the asyncio driver, no thread per call)."""

    def __init__(self, policy: Idempotency, heartbeat: float, lock_timeout: float) -> None:
        self._policy = policy
        self._app = policy.app
        self._definition = _RequestRecord.__acidic_definition__
        self._heart = _Heartbeat(policy.app, heartbeat, lock_timeout)
        #: The manager of the records: the App's, or an event loop's (:meth:`on_loop`).
        self._runs_manager: Manager = policy.app.manager

    async def on_loop(self) -> Records:
        """These records on the running event loop's manager (the App's asyncio engine):
        call their methods with ``in_greenlet`` instead of in a thread. The heartbeat
        stays the App's (a thread on the sync engine)."""
        records = copy.copy(self)
        records._runs_manager = await self._runs_manager.async_sides.manager()
        return records

    def begin(self, request: IdempotentRequest) -> Replay | Claimed | Problem:
        """Claim the request's record (run the handler), or say what to answer instead."""
        observer = self._app.manager.observer
        handle = observer.http_started(request.method, request.path)
        outcome = self._begin(request)
        if isinstance(outcome, Claimed):
            observer.http_ended(handle, "record", request.record_key, None)
        elif isinstance(outcome, Replay):
            observer.http_ended(handle, "replay", request.record_key, outcome.response.status)
        else:
            decision = _DECISIONS.get(outcome.status, "conflict")
            observer.http_ended(handle, decision, request.record_key, outcome.status)
        return outcome

    def _begin(self, request: IdempotentRequest) -> Replay | Claimed | Problem:
        record = _RequestRecord(
            method=request.method,
            path=request.path,
            body_sha256=request.body_sha256,
            caller_sha256=request.caller_sha256,
        )
        encoded = self._definition.encode_args(record)
        manager = self._runs_manager
        key = request.record_key
        try:
            for _ in range(3):  # an expired record is deleted, then the key claimed afresh
                try:
                    outcome = manager.claim(RECORD_JOB, self._definition, key, encoded)
                except ArgumentMismatchError:
                    if self._expire(key):
                        continue
                    return _problems.key_reused(self._mismatch(request))
                except RunCancelledError:
                    if self._expire(key):
                        continue
                    return _problems.key_in_use(
                        f"the record of this {HEADER} was cancelled; use a new key"
                    )
                if isinstance(outcome, Finished):
                    if self._expire(key):
                        continue
                    stored = StoredResponse.from_json(outcome.result)
                    if stored is None:
                        return _problems.key_in_use(
                            f"this {HEADER} is in use and its response cannot be replayed yet"
                        )
                    return Replay(stored)
                self._heart.hold(outcome.row.id, outcome.token)
                return Claimed(
                    request=request,
                    run_id=outcome.row.id,
                    token=outcome.token,
                    attempt=outcome.row.attempts,
                    started=manager.clock(),
                )
        except KeyLockedError:
            return _problems.key_in_use(
                f"a request with this {HEADER} is still being processed; retry after it ends"
            )
        except (StorageError, SchemaVersionError, sa.exc.SQLAlchemyError) as exc:
            log.error("idempotency store unavailable for %r: %s", key, exc)
            return _problems.unavailable(
                "the idempotency store cannot be reached; nothing was done, retry later"
            )
        return _problems.key_in_use(f"this {HEADER} keeps changing state; retry later")

    def finish(self, claimed: Claimed, response: StoredResponse) -> bool:
        """Store the handler's final response, or release the record without one when
        it is not to be stored (a 5xx, a "retry later" answer, too large); True if
        stored."""
        policy = self._policy
        try:
            storable = bool(policy.store_status(response.status))
        except BaseException as exc:
            self.abandon(claimed, exc)  # never leave the record held by the heartbeat
            raise
        if not storable:
            self.abandon(claimed, f"the response was HTTP {response.status}, which is not stored")
            return False
        retry_later = asks_retry(response.status, response.headers)
        if retry_later is not None:
            self.abandon(claimed, retry_later)
            return False
        if len(response.body) > policy.max_response_size:
            self.abandon(claimed, too_large(policy.max_response_size, len(response.body)))
            return False
        if claimed.settled:
            return False
        claimed.settled = True
        self._heart.release(claimed.run_id)
        try:
            stored = self._runs_manager.finish_owned(
                Fence(claimed.run_id, claimed.token),
                step="respond",
                attempt=claimed.attempt,
                started=claimed.started,
                result_json=dumps(response.kept().to_json()),
            )
        except StorageError as exc:
            log.error("could not store the response for %r: %s", claimed.request.record_key, exc)
            return False
        if not stored:
            log.warning(
                "the record %r was taken over while its handler ran; this response is sent "
                "but not stored",
                claimed.request.record_key,
            )
        return stored

    def abandon(self, claimed: Claimed, reason: BaseException | str) -> None:
        """Release the record without a stored response (status ``failed``, with the
        reason as its error): a retry of the key runs the handler again. Never raises."""
        if claimed.settled:
            return
        claimed.settled = True
        self._heart.release(claimed.run_id)
        if isinstance(reason, BaseException):
            error = RunError(
                type=f"{type(reason).__module__}.{type(reason).__qualname__}",
                message=str(reason),
                traceback="".join(traceback.format_exception(reason)),
                step="respond",
            )
        else:
            error = RunError(
                type="acidic.http.NotStored", message=reason, traceback="", step="respond"
            )
        error_json = json.dumps(error.to_json())
        try:
            self._runs_manager.fail_owned(
                Fence(claimed.run_id, claimed.token),
                step="respond",
                attempt=claimed.attempt,
                started=claimed.started,
                error_json=error_json,
            )
        except Exception:
            # The lock goes stale after lock_timeout and a retry takes the record over.
            log.exception("could not release the record %r", claimed.request.record_key)

    def purge_expired(self, batch: int) -> int:
        """Delete every expired record, ``batch`` per transaction; how many."""
        return _expiry.purge(self._runs_manager, RECORD_JOB, self._policy.expires, batch)

    def close(self) -> None:
        """Stop the heartbeat thread."""
        self._heart.close()

    def _expire(self, key: str) -> bool:
        return _expiry.expire(self._runs_manager, RECORD_JOB, key, self._policy.expires)

    def _mismatch(self, request: IdempotentRequest) -> str:
        row = self._runs_manager.find(request.record_key, checked=False)
        base = f"this {HEADER} was first used for another request"
        if row is None or row.job != RECORD_JOB:
            return base + "; use a new key for a new request"
        stored = json.loads(row.args)
        parts = []
        if stored.get("method") != request.method or stored.get("path") != request.path:
            parts.append(f"{stored.get('method')} {stored.get('path')}")
        if stored.get("body_sha256") != request.body_sha256:
            parts.append("another body")
        if stored.get("caller_sha256") != request.caller_sha256:
            parts.append("another caller")
        return f"{base} ({', '.join(parts) or 'another request'}); use a new key for a new request"
