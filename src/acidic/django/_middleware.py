"""``acidic.django.IdempotencyMiddleware``: the ``Idempotency-Key`` header for Django
views, sync and async, with the semantics and problem responses of :mod:`acidic.http`.

::

    MIDDLEWARE = [..., "acidic.django.IdempotencyMiddleware"]
    ACIDIC = {..., "IDEMPOTENCY": {"methods": ["POST"], "required": False,
                                   "caller": "myproject.auth.caller_of"}}

``ACIDIC["IDEMPOTENCY"]`` holds the keyword options of :class:`acidic.http.Idempotency`
(``caller`` and ``required`` may be dotted paths to functions). In a view,
``acidic.http.idempotent_request(request)`` is the request being handled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.module_loading import import_string

from .._errors import KeyLockedError
from ..http import _problems
from ..http._fingerprint import InvalidKeyHeaderError, body_digest, canonical_path, parse_key
from ..http._policy import Idempotency
from ..http._problems import Problem
from ..http._records import Claimed, Replay
from ..http._request import SCOPE_KEY, MissingKeyError, RequestInfo
from ..http._responses import StoredResponse, too_large
from ._app import get_app

__all__ = ["IdempotencyMiddleware", "policy"]

_policy: Idempotency | None = None
_lock = threading.Lock()


def policy() -> Idempotency:
    """The project's :class:`acidic.http.Idempotency`, from ``ACIDIC["IDEMPOTENCY"]``."""
    global _policy  # noqa: PLW0603 - one policy per project, as one settings module
    with _lock:
        if _policy is None:
            options = dict(getattr(settings, "ACIDIC", {}).get("IDEMPOTENCY", {}))
            for name in ("caller", "required", "store_status"):
                if isinstance(options.get(name), str):
                    options[name] = import_string(options[name])
            _policy = Idempotency(get_app(), **options)
        return _policy


def _problem(problem: Problem) -> HttpResponse:
    body = problem.body()
    response = HttpResponse(body, status=problem.status)
    for name, value in problem.response_headers(body):
        response[name] = value
    return response


class IdempotencyMiddleware:
    """Runs a request carrying ``Idempotency-Key`` once; stores its final response and
    replays it to repeats (``Idempotent-Replayed: true``); answers 409 while the key's
    first request is in flight, 422 for the key with another request, 400 for a
    missing key where one is required, as ``application/problem+json``."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        begun = self._begin(request)
        if not isinstance(begun, Claimed):
            return begun if begun is not None else self._pass(request)
        try:
            response = self.get_response(request)
        except KeyLockedError as exc:
            policy()._records.abandon(begun, exc)
            return _problem(_problems.job_in_use(str(exc)))
        except BaseException as exc:
            policy()._records.abandon(begun, exc)
            raise
        return self._end(begun, response)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        begun = await sync_to_async(self._begin)(request)
        if not isinstance(begun, Claimed):
            if begun is not None:
                return begun
            try:
                return await self.get_response(request)
            except MissingKeyError:
                return _problem(_problems.missing_key("Idempotency-Key"))
        try:
            response = await self.get_response(request)
        except KeyLockedError as exc:
            await sync_to_async(policy()._records.abandon)(begun, exc)
            return _problem(_problems.job_in_use(str(exc)))
        except BaseException as exc:
            await sync_to_async(policy()._records.abandon)(begun, exc)
            raise
        return await sync_to_async(self._end)(begun, response)

    def _pass(self, request: HttpRequest) -> Any:
        try:
            return self.get_response(request)
        except MissingKeyError:
            return _problem(_problems.missing_key("Idempotency-Key"))

    def _begin(self, request: HttpRequest) -> HttpResponseBase | Claimed | None:
        """A response (problem or replay), the claimed record, or None: no key."""
        idem = policy()
        _mark(request, None)
        method = (request.method or "GET").upper()
        if not idem._applies(method):
            return None
        raw_path = (request.META.get("SCRIPT_NAME", "") + request.path_info).encode()
        path = canonical_path(raw_path, request.META.get("QUERY_STRING", ""), escaped=False)
        header = request.headers.get("Idempotency-Key")
        try:
            key = parse_key([] if header is None else [header], idem.max_key_length)
        except InvalidKeyHeaderError as exc:
            return _problem(_problems.invalid_key(str(exc)))
        if key is None:
            if idem._requires_key(method, path):
                return _problem(_problems.missing_key("Idempotency-Key"))
            return None
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > idem.max_request_size:
            return _problem(_problems.request_too_large(idem.max_request_size))
        body = request.body
        headers = {name.lower(): str(value) for name, value in request.headers.items()}
        info = RequestInfo(method=method, path=path, headers=headers, native=request)
        identified = idem._identify(key, info, body_digest(body, headers.get("content-type")))
        outcome = idem._records.begin(identified)
        if isinstance(outcome, Problem):
            return _problem(outcome)
        if isinstance(outcome, Replay):
            stored = outcome.response
            replay = HttpResponse(stored.body, status=stored.status)
            for name, value in stored.replay_headers(idem.replay_header):
                replay[name] = value
            return replay
        _mark(request, identified)
        return outcome

    def _end(self, claimed: Claimed, response: HttpResponseBase) -> HttpResponseBase:
        idem = policy()
        if isinstance(response, StreamingHttpResponse) or not isinstance(response, HttpResponse):
            idem._records.abandon(claimed, "a streaming response is not stored")
            return response
        body = response.content
        if len(body) > idem.max_response_size:
            idem._records.abandon(claimed, too_large(idem.max_response_size, len(body)))
            return response
        stored = StoredResponse(
            status=response.status_code,
            headers=tuple((str(n), str(v)) for n, v in response.items()),
            body=body,
        )
        # Stored before it is sent: a client that saw it can only get it again.
        idem._records.finish(claimed, stored)
        return response


def _mark(request: HttpRequest, value: Any) -> None:
    """Where ``acidic.http.idempotent_request(request)`` finds the request's record."""
    request.META[SCOPE_KEY] = value
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict):
        scope[SCOPE_KEY] = value
