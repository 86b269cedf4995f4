"""The ASGI middleware (Starlette, FastAPI, Litestar, any ASGI 3 application)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from .._engine._aio import in_greenlet
from .._errors import AcidicError, KeyLockedError
from . import _problems
from ._fingerprint import InvalidKeyHeaderError, body_digest, canonical_path, parse_key
from ._policy import Idempotency
from ._problems import Problem
from ._records import Claimed, Records, Replay
from ._request import SCOPE_KEY, IdempotentRequest, MissingKeyError, RequestInfo
from ._responses import StoredResponse, too_large

__all__ = ["IdempotencyMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_T = TypeVar("_T")


def _is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"text/event-stream"
    return False


class IdempotencyMiddleware:
    """ASGI middleware making requests with an ``Idempotency-Key`` idempotent.

    ``app.add_middleware(IdempotencyMiddleware, idempotency=idem)`` in Starlette and
    FastAPI, ``IdempotencyMiddleware(asgi_app, idem)`` anywhere else. The database work
    goes through the App's asyncio engine (its asyncio driver: ``acidic[async]``; in
    worker threads without one), never blocking the event loop. Needs an asyncio loop.
    """

    def __init__(self, app: ASGIApp, idempotency: Idempotency) -> None:
        if not isinstance(idempotency, Idempotency):
            raise AcidicError(
                f"IdempotencyMiddleware needs an acidic.http.Idempotency, not {idempotency!r}"
            )
        self.app = app
        self.idempotency = idempotency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        idem = self.idempotency
        scope[SCOPE_KEY] = None
        method = str(scope["method"]).upper()
        if not idem._applies(method):
            await self._without_key(scope, receive, send)
            return
        raw_headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        raw_path = scope.get("raw_path")
        if raw_path:
            path = canonical_path(bytes(raw_path), _query(scope), escaped=True)
        else:
            path = canonical_path(str(scope["path"]).encode("utf-8"), _query(scope), escaped=False)
        values = [v.decode("latin-1") for n, v in raw_headers if n.lower() == b"idempotency-key"]
        try:
            key = parse_key(values, idem.max_key_length)
        except InvalidKeyHeaderError as exc:
            await _send_problem(send, _problems.invalid_key(str(exc)))
            return
        if key is None:
            if idem._requires_key(method, path):
                await _send_problem(send, _problems.missing_key("Idempotency-Key"))
                return
            await self._without_key(scope, receive, send)
            return
        body = await _read_body(receive, idem.max_request_size)
        if body is _DISCONNECTED:
            return  # the client left before sending its whole body: nothing to do
        if body is None:
            await _send_problem(send, _problems.request_too_large(idem.max_request_size))
            return
        headers: dict[str, str] = {}
        for name, value in raw_headers:
            n, v = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[n] = f"{headers[n]}, {v}" if n in headers else v
        info = RequestInfo(method=method, path=path, headers=headers, native=scope)
        content_type = headers.get("content-type")

        def begin(records: Records) -> tuple[IdempotentRequest, Replay | Claimed | Problem]:
            request = idem._identify(key, info, body_digest(body, content_type))
            return request, records.begin(request)

        claiming = asyncio.ensure_future(_on_records(idem, begin))
        try:
            request, outcome = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # The thread goes on: a claim it makes must not stay held (and heartbeaten)
            # for a request that is gone.
            claiming.add_done_callback(functools.partial(_release_if_claimed, idem))
            raise
        if isinstance(outcome, Problem):
            await _send_problem(send, outcome)
            return
        if isinstance(outcome, Replay):
            await _send_stored(send, outcome.response, idem.replay_header)
            return
        scope[SCOPE_KEY] = request
        await self._handle(outcome, scope, _replaying(body, receive), send)

    async def _without_key(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; a per-endpoint helper may still require a key."""
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except MissingKeyError:
            if started:
                raise
            await _send_problem(send, _problems.missing_key("Idempotency-Key"))

    async def _handle(self, claimed: Claimed, scope: Scope, receive: Receive, send: Send) -> None:
        idem = self.idempotency
        response = _Capture(idem, claimed, send)
        try:
            await self.app(scope, receive, response.send)
        except KeyLockedError as exc:
            # The handler's own acidic job is still locked by a request that died (its
            # lock outlives this record's): the client retries, as for the record.
            await _on_records(idem, functools.partial(_abandon, claimed=claimed, reason=exc))
            if response.sent:
                raise
            await _send_problem(send, _problems.job_in_use(str(exc)))
            return
        except BaseException as exc:
            if not claimed.settled:
                # Shielded: a cancelled request still releases its record at once.
                with contextlib.suppress(BaseException):
                    await asyncio.shield(
                        _on_records(idem, functools.partial(_abandon, claimed=claimed, reason=exc))
                    )
            raise
        if not response.sent:
            reason = "the application returned without a complete response"
            await _on_records(idem, functools.partial(_abandon, claimed=claimed, reason=reason))


class _Capture:
    """The ``send`` the application gets: holds the response back until it is complete,
    stores it, then sends it; passes through what is not to be stored."""

    def __init__(self, idem: Idempotency, claimed: Claimed, send: Send) -> None:
        self.idem = idem
        self.claimed = claimed
        self.downstream = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.passing = False  # not stored: forwarded as it comes
        self.done = False

    @property
    def sent(self) -> bool:
        """Whether anything reached the client."""
        return self.passing or self.done

    async def pass_through(self, reason: str) -> None:
        self.passing = True
        claimed = self.claimed
        await _on_records(self.idem, lambda records: records.abandon(claimed, reason))
        if self.start is not None:
            await self.downstream(self.start)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.passing:
            await self.downstream(message)
            return
        if kind == "http.response.start":
            self.start = message
            if message.get("trailers"):
                await self.pass_through("a response with trailers is not stored")
            elif _is_event_stream(list(message.get("headers") or [])):
                await self.pass_through("an event stream (text/event-stream) is not stored")
            return
        if kind != "http.response.body":
            await self.pass_through(f"a response sent as {kind!r} is not stored")
            await self.downstream(message)
            return
        chunk = bytes(message.get("body") or b"")
        self.size += len(chunk)
        if self.size > self.idem.max_response_size:
            await self.pass_through(too_large(self.idem.max_response_size, self.size))
            await self.downstream(
                {
                    "type": "http.response.body",
                    "body": b"".join([*self.chunks, chunk]),
                    "more_body": bool(message.get("more_body")),
                }
            )
            return
        self.chunks.append(chunk)
        if not message.get("more_body"):
            await self._complete()

    async def _complete(self) -> None:
        start = self.start
        assert start is not None, "http.response.body before http.response.start"
        response = StoredResponse(
            status=int(start["status"]),
            headers=tuple(
                (n.decode("latin-1"), v.decode("latin-1")) for n, v in (start.get("headers") or [])
            ),
            body=b"".join(self.chunks),
        )
        # Stored before it is sent: a client that saw it can only get it again.
        claimed = self.claimed
        await _on_records(self.idem, lambda records: records.finish(claimed, response))
        self.done = True
        await self.downstream(start)
        await self.downstream(
            {"type": "http.response.body", "body": response.body, "more_body": False}
        )


def _release_if_claimed(idem: Idempotency, claiming: asyncio.Future[Any]) -> None:
    if claiming.cancelled() or claiming.exception() is not None:
        return
    _, outcome = claiming.result()
    if isinstance(outcome, Claimed):
        reason = "the request was cancelled before its handler started"
        # A loop that is closing refuses the job: the lock then expires with the process.
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().run_in_executor(None, idem._records.abandon, outcome, reason)


def _abandon(records: Records, *, claimed: Claimed, reason: BaseException | str) -> None:
    records.abandon(claimed, reason)


async def _on_records(idem: Idempotency, call: Callable[[Records], _T]) -> _T:
    """``call(records)`` on the running loop's records, in SQLAlchemy's greenlet bridge:
    the database through the asyncio driver, without a thread per call. Without an
    asyncio driver (acidic[async] not installed), in a worker thread on the App's engine."""
    try:
        records = await idem._records.on_loop()
    except AcidicError:
        return await asyncio.to_thread(call, idem._records)
    return await in_greenlet(call, records)  # type: ignore[no-any-return]


def _query(scope: Scope) -> str:
    return bytes(scope.get("query_string") or b"").decode("latin-1")


#: What _read_body returns when the client disconnected before the end of its body.
_DISCONNECTED = b"\x00disconnected"


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body; None when it is larger than ``limit``;
    ``_DISCONNECTED`` (compared by identity) when the client left first."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return _DISCONNECTED
        chunk = bytes(message.get("body") or b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the application the body already read, then the client's
    later messages (a disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_problem(send: Send, problem: Problem) -> None:
    body = problem.body()
    await send(
        {
            "type": "http.response.start",
            "status": problem.status,
            "headers": [
                (n.encode("latin-1"), v.encode("latin-1"))
                for n, v in problem.response_headers(body)
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_stored(send: Send, response: StoredResponse, replay_header: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [
                (n.encode("latin-1"), v.encode("latin-1"))
                for n, v in response.replay_headers(replay_header)
            ],
        }
    )
    await send({"type": "http.response.body", "body": response.body, "more_body": False})
