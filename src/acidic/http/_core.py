"""The framework-neutral core: the policy, and idempotency records kept as acidic runs.

Each key a caller sends is one run of the internal job ``acidic.http.request``, under
the run key ``http:<caller digest>:<key>``. The run's arguments are the request's
fingerprint, so a different request under the same key is refused as the engine
refuses other arguments (422); the run's lock is the "in flight" state (409); its
result is the stored response (replayed); a response that is not to be stored leaves
the run ``failed``, so that a retry claims it and runs the handler again. The CLI,
``app.get`` and ``app.prune`` see these runs like any other.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import threading
import traceback
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import sqlalchemy as sa

from .._app import App
from .._encoding import MAX_KEY_LENGTH, dumps
from .._engine import Finished
from .._errors import (
    AcidicError,
    ArgumentMismatchError,
    KeyLockedError,
    RunCancelledError,
    SchemaVersionError,
    StorageError,
)
from .._job import Job, step
from .._run import RunError, RunStatus
from .._storage import Fence
from . import _problems
from ._fingerprint import HEADER
from ._problems import Problem

__all__ = [
    "RECORD_JOB",
    "SCOPE_KEY",
    "Claimed",
    "Idempotency",
    "IdempotentRequest",
    "MissingKeyError",
    "Replay",
    "RequestInfo",
    "StoredResponse",
    "idempotent_request",
]

log = logging.getLogger("acidic.http")

#: The registered name of the job whose runs are the idempotency records.
RECORD_JOB = "acidic.http.request"
#: Where the middlewares put the :class:`IdempotentRequest` in the ASGI scope or the
#: WSGI environ (None there when the request carries no key).
SCOPE_KEY = "acidic.idempotency"
#: Longest name accepted by :meth:`IdempotentRequest.job_key`.
MAX_JOB_NAME = 36
#: Characters of a record key before the client's key: ``http:`` + 12 hex + ``:``.
_PREFIX_LENGTH = 18
#: The longest client key a record key (and a job key derived from it) can hold.
MAX_CLIENT_KEY_LENGTH = MAX_KEY_LENGTH - _PREFIX_LENGTH - 1 - MAX_JOB_NAME

#: Response headers never stored nor replayed: they describe one connection or one
#: response (hop-by-hop, dates, lengths recomputed on replay), or carry session
#: secrets (cookies) that should not sit in the runs table.
NOT_STORED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "date",
        "server",
        "content-length",
        "set-cookie",
    }
)


class MissingKeyError(AcidicError):
    """An endpoint that requires an ``Idempotency-Key`` was called without one.

    Raised by the per-endpoint helpers; the middlewares answer it with 400.
    """


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the ``caller`` function sees of a request."""

    method: str
    #: The fingerprinted target: the path (escapes normalised) and ``?query`` if any.
    path: str
    #: Request headers, names lowercase, repeated headers joined with ``", "``.
    headers: Mapping[str, str]
    #: The ASGI scope or the WSGI environ, for what an earlier middleware put there
    #: (``scope["user"]``, ``environ["REMOTE_USER"]``, ...).
    native: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A request being handled under an idempotency key.

    The middlewares put it in the ASGI scope / WSGI environ under
    ``"acidic.idempotency"`` (None there when the request carries no key).
    """

    #: The key the client sent.
    key: str
    #: The key of the acidic run that records this request.
    record_key: str
    method: str
    path: str
    #: SHA-256 (hex) of the body, of its canonical JSON for JSON bodies.
    body_sha256: str
    #: SHA-256 (hex) of the caller identity ("" when the application gives none).
    caller_sha256: str

    def job_key(self, name: str = "job") -> str:
        """An acidic key for a job the handler runs for this request: ``app.run(job,
        key=request.job_key())``. A retried request gets the same key, so its job
        resumes at its recovery point (or returns its stored result)."""
        # No "/" in the name: the key then splits unambiguously at its last "/".
        if not isinstance(name, str) or not 0 < len(name) <= MAX_JOB_NAME or "/" in name:
            raise AcidicError(
                f"job_key(name) takes 1 to {MAX_JOB_NAME} characters without '/', not {name!r}"
            )
        return f"{self.record_key}/{name}"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A final response as stored and replayed."""

    status: int
    #: (name, value) pairs in order, as the handler sent them (minus the ones acidic
    #: does not store, see ``NOT_STORED_HEADERS``).
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def to_json(self) -> dict[str, Any]:
        """The stored form: the body as UTF-8 text when it is valid UTF-8, else base64."""
        try:
            text, encoding = self.body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(self.body).decode("ascii"), "base64"
        return {
            "status": self.status,
            "headers": [list(h) for h in self.headers],
            "body": text,
            "encoding": encoding,
        }

    @classmethod
    def from_json(cls, data: Any) -> StoredResponse | None:
        """Read a stored response back; None if ``data`` is not one."""
        if not isinstance(data, dict):
            return None
        try:
            text = data["body"]
            if data["encoding"] == "utf-8":
                body = text.encode("utf-8")
            elif data["encoding"] == "base64":
                body = base64.b64decode(text, validate=True)
            else:
                return None
            headers = tuple((str(n), str(v)) for n, v in data["headers"])
            return cls(int(data["status"]), headers, body)
        except (KeyError, TypeError, ValueError, binascii.Error):
            return None

    def replay_headers(self, replay_header: str) -> list[tuple[str, str]]:
        """The stored headers, Content-Length, and the header marking a replay."""
        return [
            *self.headers,
            ("content-length", str(len(self.body))),
            (replay_header, "true"),
        ]

    @property
    def reason(self) -> str:
        """The standard reason phrase of the status (WSGI needs one)."""
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Unknown"


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


class _Heartbeat:
    """Renews the locks of the records whose handlers are running, from one thread."""

    def __init__(self, app: App, interval: float, timeout: float) -> None:
        self._manager = app.manager
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
                lost = self._manager.renew_locks(held)
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


def _seconds(value: float | dt.timedelta, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise AcidicError(
            f"{what} must be a positive number of seconds or a timedelta, not {value!r}"
        )
    return float(seconds)


def _size(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AcidicError(f"{what} must be a number of bytes (an int >= 0), not {value!r}")
    return value


def _default_store_status(status: int) -> bool:
    return status < 500


class Idempotency:
    """Idempotent HTTP requests on an acidic :class:`~acidic.App`: the policy the ASGI
    and WSGI middlewares apply, and the records they keep (as runs of the App).

    - ``caller(info)`` returns the identity of the request's caller (an account id,
      the API key, ...): keys are scoped per caller and the caller is part of the
      fingerprint. Default: every request has the same (anonymous) caller.
    - ``methods``: the methods handled (default POST and PATCH); other requests pass
      through untouched, whatever headers they carry.
    - ``required``: whether a request of those methods without a key is refused with
      400 (True), let through (False, the default), or a function of
      ``(method, path)`` deciding per endpoint.
    - ``expires``: how long a key lives after its response was stored (default
      24 hours; seconds or a timedelta); an expired key may be used again.
    - ``max_key_length`` (default 200, at most 200), ``max_request_size`` (request
      bodies are held in memory to fingerprint them; larger ones get 413; default
      10 MiB), ``max_response_size`` (larger responses are sent but not stored, like
      a 5xx; default 1 MiB).
    - ``heartbeat``: seconds between renewals of the locks of records whose handlers
      are running (default a third of the App's ``lock_timeout``). The record of a
      request whose server died is taken over by a retry once the App's
      ``lock_timeout`` has passed since the last renewal.
    - ``store_status(status)``: which final statuses are stored; default: below 500.
    - ``replay_header``: the response header marking a replay (``Idempotent-Replayed:
      true``).
    """

    def __init__(
        self,
        app: App,
        *,
        caller: Callable[[RequestInfo], str | None] | None = None,
        methods: Collection[str] = ("POST", "PATCH"),
        required: bool | Callable[[str, str], bool] = False,
        expires: float | dt.timedelta = dt.timedelta(hours=24),
        max_key_length: int = 200,
        max_request_size: int = 10 * 1024 * 1024,
        max_response_size: int = 1024 * 1024,
        heartbeat: float | None = None,
        store_status: Callable[[int], bool] = _default_store_status,
        replay_header: str = "Idempotent-Replayed",
    ) -> None:
        if not isinstance(app, App):
            raise AcidicError(f"Idempotency needs an acidic.App, not {app!r}")
        if isinstance(methods, str) or not all(isinstance(m, str) and m for m in methods):
            raise AcidicError(f"methods must be a collection of HTTP method names, not {methods!r}")
        if (
            isinstance(max_key_length, bool)
            or not isinstance(max_key_length, int)
            or not 0 < max_key_length <= MAX_CLIENT_KEY_LENGTH
        ):
            raise AcidicError(
                f"max_key_length must be an int from 1 to {MAX_CLIENT_KEY_LENGTH} (a record key "
                f"adds a caller scope and must fit acidic's {MAX_KEY_LENGTH}), not "
                f"{max_key_length!r}"
            )
        if not isinstance(replay_header, str) or not replay_header:
            raise AcidicError(f"replay_header must be a header name, not {replay_header!r}")
        self.app = app
        self.caller = caller
        self.methods = frozenset(m.upper() for m in methods)
        self.required = required
        self.expires = _seconds(expires, "expires")
        self.max_key_length = max_key_length
        self.max_request_size = _size(max_request_size, "max_request_size")
        self.max_response_size = _size(max_response_size, "max_response_size")
        app.job(name=RECORD_JOB)(_RequestRecord)
        self._definition = _RequestRecord.__acidic_definition__
        self.lock_timeout = app.manager.lock_timeout_for(self._definition)
        self.heartbeat = (
            max(self.lock_timeout / 3, 0.05)
            if heartbeat is None
            else _seconds(heartbeat, "heartbeat")
        )
        if self.heartbeat >= self.lock_timeout:
            raise AcidicError(
                f"heartbeat ({self.heartbeat} s) must be shorter than lock_timeout "
                f"(the App's lock_timeout, {self.lock_timeout} s), or locks expire under "
                "running handlers"
            )
        self.store_status = store_status
        self.replay_header = replay_header.lower()
        self._heart = _Heartbeat(app, self.heartbeat, self.lock_timeout)

    # -- policy -----------------------------------------------------------------------

    def applies(self, method: str) -> bool:
        """Whether requests of ``method`` are handled at all."""
        return method.upper() in self.methods

    def is_required(self, method: str, path: str) -> bool:
        """Whether a request without a key is refused with 400."""
        if callable(self.required):
            return bool(self.required(method, path))
        return bool(self.required)

    def caller_of(self, info: RequestInfo) -> str:
        """The caller identity of a request ("" when anonymous)."""
        if self.caller is None:
            return ""
        who = self.caller(info)
        if who is None:
            return ""
        if not isinstance(who, str):
            raise AcidicError(f"the caller function must return a str or None, not {who!r}")
        return who

    # -- records ----------------------------------------------------------------------

    def request(self, key: str, info: RequestInfo, body_sha256: str) -> IdempotentRequest:
        """The identity of a keyed request: its record key and fingerprint."""
        caller = hashlib.sha256(self.caller_of(info).encode("utf-8", "surrogatepass")).hexdigest()
        return IdempotentRequest(
            key=key,
            record_key=f"http:{caller[:12]}:{key}",
            method=info.method.upper(),
            path=info.path,
            body_sha256=body_sha256,
            caller_sha256=caller,
        )

    def begin(self, request: IdempotentRequest) -> Replay | Claimed | Problem:
        """Claim the request's record (run the handler), or say what to answer instead.

        Blocking (database I/O): ASGI code calls it in a worker thread.
        """
        record = _RequestRecord(
            method=request.method,
            path=request.path,
            body_sha256=request.body_sha256,
            caller_sha256=request.caller_sha256,
        )
        encoded = self._definition.encode_args(record)
        manager = self.app.manager
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
        its status is not stored (5xx) or it is too large; True if stored.

        Blocking: ASGI code calls it in a worker thread.
        """
        try:
            storable = bool(self.store_status(response.status))
        except BaseException as exc:
            self.abandon(claimed, exc)  # never leave the record held by the heartbeat
            raise
        if not storable:
            self.abandon(claimed, f"the response was HTTP {response.status}, which is not stored")
            return False
        if len(response.body) > self.max_response_size:
            self.abandon(claimed, self.too_large_reason(len(response.body)))
            return False
        if claimed.settled:
            return False
        claimed.settled = True
        self._heart.release(claimed.run_id)
        kept = StoredResponse(
            response.status,
            tuple((n, v) for n, v in response.headers if n.lower() not in NOT_STORED_HEADERS),
            response.body,
        )
        try:
            stored = self.app.manager.finish_owned(
                Fence(claimed.run_id, claimed.token),
                step="respond",
                attempt=claimed.attempt,
                started=claimed.started,
                result_json=dumps(kept.to_json()),
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

    def too_large_reason(self, size: int) -> str:
        """Why a response of ``size`` (or more) bytes is not stored."""
        return (
            f"the response body exceeds max_response_size ({self.max_response_size} bytes; "
            f"at least {size} were sent), so it is not stored"
        )

    def abandon(self, claimed: Claimed, reason: BaseException | str) -> None:
        """Release the record without a stored response (status ``failed``, with the
        reason as its error): a retry of the key runs the handler again.

        Blocking: ASGI code calls it in a worker thread. Never raises.
        """
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
            self.app.manager.fail_owned(
                Fence(claimed.run_id, claimed.token),
                step="respond",
                attempt=claimed.attempt,
                started=claimed.started,
                error_json=error_json,
            )
        except Exception:
            # The lock goes stale after lock_timeout and a retry takes the record over.
            log.exception("could not release the record %r", claimed.request.record_key)

    def _mismatch(self, request: IdempotentRequest) -> str:
        row = self.app.manager.find(request.record_key)
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

    def _expire(self, key: str) -> bool:
        """Delete the key's record if it has expired; True if it did."""
        manager = self.app.manager
        now = manager.clock()
        # Looked at first without a write transaction: on SQLite that would take the
        # database's only write lock for every replay.
        row = manager.find(key)
        if row is None or row.status not in _ENDED:
            return False
        if row.lock_token is not None and (row.lock_expires_at or now) > now:
            return False
        stored_at = row.finished_at or row.last_run_at or row.created_at
        if stored_at >= now - dt.timedelta(seconds=self.expires):
            return False
        return manager.delete_expired(RECORD_JOB, self.expires, key=key) > 0

    def purge_expired(self, batch: int = 1000) -> int:
        """Delete every expired record (succeeded, failed or cancelled, stored more than
        ``expires`` ago); return how many."""
        return self.app.manager.delete_expired(RECORD_JOB, self.expires)

    def close(self) -> None:
        """Stop the heartbeat thread (the App stays open: close it yourself)."""
        self._heart.close()


#: The statuses of records that may expire (no handler is running for them).
_ENDED = (RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value)


def idempotent_request(request: Any, *, required: bool = False) -> IdempotentRequest | None:
    """The :class:`IdempotentRequest` the middleware is handling, from a request object
    (Starlette/FastAPI ``Request``, Flask/Werkzeug or Django request) or an ASGI scope
    or WSGI environ; None when the request carries no key.

    With ``required``, a request without a key raises :class:`MissingKeyError`, which
    the middlewares answer with 400. Raises :class:`acidic.AcidicError` when no
    idempotency middleware saw the request.
    """
    native = getattr(request, "scope", None)
    if native is None:
        native = getattr(request, "environ", request)
    if not isinstance(native, Mapping) or SCOPE_KEY not in native:
        raise AcidicError(
            "no acidic.http middleware handled this request: install IdempotencyMiddleware "
            "(ASGI) or IdempotencyWSGIMiddleware (WSGI) around the application"
        )
    found = native[SCOPE_KEY]
    if found is None and required:
        raise MissingKeyError(f"this endpoint requires an {HEADER} header")
    return found if isinstance(found, IdempotentRequest) else None
