"""The WSGI middleware (Flask, Django, any PEP 3333 application)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from .._errors import AcidicError, KeyLockedError
from . import _problems
from ._fingerprint import InvalidKeyHeaderError, body_digest, canonical_path, parse_key
from ._policy import Idempotency
from ._problems import Problem
from ._records import Claimed, Replay
from ._request import SCOPE_KEY, MissingKeyError, RequestInfo
from ._responses import UNSTORED_KEY, StoredResponse, too_large

__all__ = ["IdempotencyWSGIMiddleware"]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class IdempotencyWSGIMiddleware:
    """WSGI middleware making requests with an ``Idempotency-Key`` idempotent.

    Flask: ``flask_app.wsgi_app = IdempotencyWSGIMiddleware(flask_app.wsgi_app, idem)``;
    Django: ``application = IdempotencyWSGIMiddleware(get_wsgi_application(), idem)``.

    A repeated header reaches WSGI applications joined into one comma-separated value
    (PEP 3333), which is refused as malformed.
    """

    def __init__(self, app: WSGIApp, idempotency: Idempotency) -> None:
        if not isinstance(idempotency, Idempotency):
            raise AcidicError(
                f"IdempotencyWSGIMiddleware needs an acidic.http.Idempotency, not {idempotency!r}"
            )
        self.app = app
        self.idempotency = idempotency

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        idem = self.idempotency
        environ[SCOPE_KEY] = None
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if not idem._applies(method):
            return self._without_key(environ, start_response)
        raw_path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1")
        path = canonical_path(raw_path, environ.get("QUERY_STRING", ""), escaped=False)
        header = environ.get("HTTP_IDEMPOTENCY_KEY")
        try:
            key = parse_key([] if header is None else [header], idem.max_key_length)
        except InvalidKeyHeaderError as exc:
            return _problem(start_response, _problems.invalid_key(str(exc)))
        if key is None:
            if idem._requires_key(method, path):
                return _problem(start_response, _problems.missing_key("Idempotency-Key"))
            return self._without_key(environ, start_response)
        body = _read_body(environ, idem.max_request_size)
        if body is None:
            return _problem(start_response, _problems.request_too_large(idem.max_request_size))
        if isinstance(body, int):
            return _problem(start_response, _problems.incomplete_body(body))
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        headers = {
            name[5:].replace("_", "-").lower(): str(value)
            for name, value in environ.items()
            if name.startswith("HTTP_")
        }
        if "CONTENT_TYPE" in environ:
            headers["content-type"] = str(environ["CONTENT_TYPE"])
        info = RequestInfo(method=method, path=path, headers=headers, native=environ)
        request = idem._identify(key, info, body_digest(body, headers.get("content-type")))
        outcome = idem._records.begin(request)
        if isinstance(outcome, Problem):
            return _problem(start_response, outcome)
        if isinstance(outcome, Replay):
            stored = outcome.response
            start_response(
                f"{stored.status} {stored.reason}", stored.replay_headers(idem.replay_header)
            )
            return [stored.body]
        environ[SCOPE_KEY] = request
        return self._handle(outcome, environ, start_response)

    def _without_key(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """Pass the request on; a per-endpoint helper may still require a key."""
        try:
            return self.app(environ, start_response)
        except MissingKeyError:
            return _problem(start_response, _problems.missing_key("Idempotency-Key"))

    def _handle(
        self, claimed: Claimed, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        idem = self.idempotency
        started: list[tuple[str, list[tuple[str, str]]]] = []
        chunks: list[bytes] = []
        size = 0

        def buffer(chunk: bytes) -> None:
            nonlocal size
            chunks.append(chunk)
            size += len(chunk)

        def capture(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            # Nothing was sent yet, so a second call (with exc_info) simply replaces it.
            started[:] = [(status, list(headers))]
            return buffer  # the legacy write() callable: buffered like the body

        try:
            try:
                result = self.app(environ, capture)
            except KeyLockedError as exc:
                # The handler's own acidic job is still locked by a request that died
                # (frameworks that turn exceptions into 500 need their own handler:
                # acidic.http.flask.install registers one; a Django project maps it).
                idem._records.abandon(claimed, exc)
                return _problem(start_response, _problems.job_in_use(str(exc)))
            iterator = iter(result)
            try:
                for chunk in iterator:
                    buffer(chunk)
                    if size > idem.max_response_size or (started and _is_stream(started[0][1])):
                        reason = (
                            too_large(idem.max_response_size, size)
                            if size > idem.max_response_size
                            else "an event stream (text/event-stream) is not stored"
                        )
                        idem._records.abandon(claimed, reason)
                        status, headers = started[0]
                        start_response(status, headers)
                        return _Rest(list(chunks), iterator, result)
            except BaseException:
                _close(result)
                raise
            _close(result)
        except BaseException as exc:
            idem._records.abandon(claimed, exc)
            raise
        if not started:
            reason = "the WSGI application returned without calling start_response"
            idem._records.abandon(claimed, reason)
            raise AcidicError(reason)
        status, headers = started[0]
        response = StoredResponse(
            status=int(status.split(" ", 1)[0]),
            headers=tuple((n, v) for n, v in headers),
            body=b"".join(chunks),
        )
        unstored = environ.get(UNSTORED_KEY)
        if isinstance(unstored, BaseException | str):
            # A framework helper answered an acidic error itself (acidic.http.flask).
            idem._records.abandon(claimed, unstored)
        else:
            # Stored before it is sent: a client that saw it can only get it again.
            idem._records.finish(claimed, response)
        start_response(status, headers)
        return [response.body]


class _Rest:
    """A response passed through unstored: the chunks read so far, then the rest."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes], result: Iterable[bytes]) -> None:
        self._head = head
        self._rest = rest
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        yield from self._head
        yield from self._rest

    def close(self) -> None:
        _close(self._result)


def _is_stream(headers: list[tuple[str, str]]) -> bool:
    for name, value in headers:
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower() == "text/event-stream"
    return False


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _read_body(environ: Environ, limit: int) -> bytes | int | None:
    """The whole request body; None when it is larger than ``limit``; the declared
    length when fewer bytes arrived (the client left)."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length_text = environ.get("CONTENT_LENGTH") or ""
    if length_text.strip():
        try:
            length = int(length_text)
        except ValueError:
            length = 0
        if length > limit:
            return None
        data = bytes(stream.read(length)) if length > 0 else b""
        return data if len(data) == max(length, 0) else length
    if environ.get("wsgi.input_terminated"):
        data = bytes(stream.read(limit + 1))
        return None if len(data) > limit else data
    return b""


def _problem(start_response: StartResponse, problem: Problem) -> list[bytes]:
    body = problem.body()
    reason = StoredResponse(problem.status, (), b"").reason
    start_response(f"{problem.status} {reason}", problem.response_headers(body))
    return [body]
