"""The same small API twice, as a FastAPI (ASGI) and a Flask (WSGI) application, both
behind acidic.http, for the tests to call through real servers.

Endpoints (all POST):

- ``/echo``: 201, echoes the body, with headers worth storing (and a cookie, not stored);
- ``/rides``: the ride job of ``tests.support.jobs`` (create ride, charge, receipt) run with
  ``app.run(..., key=request.job_key("ride"))``; 201 with its result;
- ``/status/<code>``: answers ``code`` (a 4xx is stored, a 5xx not);
- ``/slow``: sleeps ``?seconds=`` then 201, to be raced;
- ``/binary``: 200 with bytes that are not UTF-8;
- ``/big``: ``?size=`` bytes of body;
- ``/stream``: a streamed body of several chunks;
- ``/events``: a text/event-stream;
- ``/raise``: the handler raises;
- ``/required``: requires a key with the per-endpoint helper;
- ``/locked``: raises ``acidic.KeyLockedError`` on its first call (its job still locked
  by an earlier attempt), then 201;
- ``/refused/<code>``: 201, but an inner middleware (between acidic's and the view)
  answers the first request of each target with ``code`` before the view runs, with
  ``Retry-After`` when the query has ``retry-after=<seconds>``, as a rate limit or a
  lock would.

Every handler execution is counted per path in ``Counter.calls``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter as _Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import flask
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

import acidic
import acidic.http
import acidic.http.flask
from acidic.http.fastapi import IdempotencyKey
from acidic.http.flask import key_required
from tests.support import jobs


class Counter:
    """Thread-safe counts of handler executions by endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: _Counter[str] = _Counter()

    def hit(self, name: str) -> int:
        with self._lock:
            self.calls[name] += 1
            return self.calls[name]


def caller(info: acidic.http.RequestInfo) -> str | None:
    return info.headers.get("x-user")


class _FirstRefusal:
    """Which targets an inner middleware has refused once already."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str]] = set()

    def refusal(self, path: str, query: str) -> tuple[int, list[tuple[str, str]]] | None:
        """(status, headers) for the first request of a ``/refused/<code>`` target."""
        if not path.startswith("/refused/"):
            return None
        with self._lock:
            if (path, query) in self._seen:
                return None
            self._seen.add((path, query))
        headers = [("content-type", "text/plain")]
        for seconds in parse_qs(query).get("retry-after", []):
            headers.append(("retry-after", seconds))
        return int(path.rsplit("/", 1)[1]), headers


class RefuseFirstASGI:
    """An ASGI middleware that refuses the first request of a target before the view."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self.refused = _FirstRefusal()

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        refusal = None
        if scope["type"] == "http":
            query = bytes(scope.get("query_string") or b"").decode()
            refusal = self.refused.refusal(str(scope["path"]), query)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, headers = refusal
        raw = [(n.encode(), v.encode()) for n, v in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": b"refused", "more_body": False})


class RefuseFirstWSGI:
    """A WSGI middleware that refuses the first request of a target before the view."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.refused = _FirstRefusal()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        refusal = self.refused.refusal(environ["PATH_INFO"], environ.get("QUERY_STRING", ""))
        if refusal is None:
            return self.app(environ, start_response)
        status, headers = refusal
        start_response(f"{status} Refused", headers)
        return [b"refused"]


def make_idempotency(app: acidic.App, **options: Any) -> acidic.http.Idempotency:
    options.setdefault("caller", caller)
    options.setdefault("max_response_size", 64 * 1024)
    options.setdefault("max_request_size", 256 * 1024)
    return acidic.http.Idempotency(app, **options)


def _ride(app: acidic.App, request: acidic.http.IdempotentRequest | None, data: Any) -> Any:
    assert request is not None
    return app.run(
        jobs.CreateRide(user_id=data["user_id"], origin=data["origin"], target=data["target"]),
        key=request.job_key("ride"),
    )


def make_asgi(app: acidic.App, idem: acidic.http.Idempotency, counter: Counter) -> FastAPI:
    api = FastAPI()
    # Added first, so inside acidic's middleware (the last one added is the outermost).
    api.add_middleware(RefuseFirstASGI)
    api.add_middleware(acidic.http.IdempotencyMiddleware, idempotency=idem)

    @api.post("/echo")
    async def echo(request: Request) -> Response:
        n = counter.hit("echo")
        body = await request.body()
        response = Response(body, 201, media_type=request.headers.get("content-type"))
        response.headers["x-execution"] = str(n)
        response.headers["location"] = "/things/1"
        response.set_cookie("session", "secret")
        return response

    @api.post("/rides", status_code=201)
    def rides(request: Request, data: dict[str, Any]) -> Any:
        counter.hit("rides")
        return _ride(app, acidic.http.idempotent_request(request), data)

    @api.post("/status/{code}")
    def status(code: int) -> Response:
        n = counter.hit("status")
        return JSONResponse({"code": code, "execution": n}, status_code=code)

    @api.post("/slow")
    def slow(seconds: float) -> Response:
        n = counter.hit("slow")
        time.sleep(seconds)
        return JSONResponse({"execution": n}, status_code=201)

    @api.post("/binary")
    def binary() -> Response:
        counter.hit("binary")
        return Response(bytes(range(256)), 200, media_type="application/octet-stream")

    @api.post("/big")
    def big(size: int) -> Response:
        n = counter.hit("big")
        return Response(b"x" * size, 200, headers={"x-execution": str(n)})

    @api.post("/stream")
    def stream() -> Response:
        n = counter.hit("stream")

        def chunks() -> Iterator[bytes]:
            yield from (f"part {i} of execution {n}\n".encode() for i in range(5))

        return StreamingResponse(chunks(), 200, media_type="text/plain")

    @api.post("/events")
    def events() -> Response:
        n = counter.hit("events")
        return StreamingResponse(iter([f"data: {n}\n\n".encode()]), media_type="text/event-stream")

    @api.post("/raise")
    def fail() -> Response:
        counter.hit("raise")
        raise RuntimeError("the handler failed")

    @api.post("/required", status_code=201)
    def required(request_key: IdempotencyKey) -> dict[str, Any]:
        n = counter.hit("required")
        return {"key": request_key.key, "execution": n}

    @api.post("/locked", status_code=201)
    def locked() -> dict[str, Any]:
        n = counter.hit("locked")
        if n == 1:
            raise acidic.KeyLockedError("key 'ride' is locked by a live run")
        return {"execution": n}

    @api.post("/refused/{code}", status_code=201)
    def refused(code: int) -> dict[str, Any]:
        return {"execution": counter.hit("refused")}

    return api


def make_wsgi(app: acidic.App, idem: acidic.http.Idempotency, counter: Counter) -> Any:
    web = flask.Flask(__name__)

    @web.post("/echo")
    def echo() -> flask.Response:
        n = counter.hit("echo")
        response = flask.Response(
            flask.request.get_data(), 201, content_type=flask.request.content_type
        )
        response.headers["x-execution"] = str(n)
        response.headers["location"] = "/things/1"
        response.set_cookie("session", "secret")
        return response

    @web.post("/rides")
    def rides() -> tuple[Any, int]:
        counter.hit("rides")
        data = json.loads(flask.request.get_data())
        result = _ride(app, acidic.http.idempotent_request(flask.request), data)
        return flask.jsonify(result), 201

    @web.post("/status/<int:code>")
    def status(code: int) -> tuple[Any, int]:
        n = counter.hit("status")
        return flask.jsonify({"code": code, "execution": n}), code

    @web.post("/slow")
    def slow() -> tuple[Any, int]:
        n = counter.hit("slow")
        time.sleep(float(flask.request.args["seconds"]))
        return flask.jsonify({"execution": n}), 201

    @web.post("/binary")
    def binary() -> flask.Response:
        counter.hit("binary")
        return flask.Response(bytes(range(256)), 200, content_type="application/octet-stream")

    @web.post("/big")
    def big() -> flask.Response:
        n = counter.hit("big")
        size = int(flask.request.args["size"])
        return flask.Response(b"x" * size, 200, headers={"x-execution": str(n)})

    @web.post("/stream")
    def stream() -> flask.Response:
        n = counter.hit("stream")

        def chunks() -> Iterator[bytes]:
            yield from (f"part {i} of execution {n}\n".encode() for i in range(5))

        return flask.Response(chunks(), 200, content_type="text/plain")

    @web.post("/events")
    def events() -> flask.Response:
        n = counter.hit("events")
        return flask.Response(iter([f"data: {n}\n\n".encode()]), content_type="text/event-stream")

    @web.post("/raise")
    def fail() -> flask.Response:
        counter.hit("raise")
        raise RuntimeError("the handler failed")

    @web.post("/required")
    @key_required
    def required() -> tuple[Any, int]:
        n = counter.hit("required")
        found = acidic.http.idempotent_request(flask.request)
        assert found is not None
        return flask.jsonify({"key": found.key, "execution": n}), 201

    @web.post("/locked")
    def locked() -> tuple[Any, int]:
        n = counter.hit("locked")
        if n == 1:
            raise acidic.KeyLockedError("key 'ride' is locked by a live run")
        return flask.jsonify({"execution": n}), 201

    @web.post("/refused/<int:code>")
    def refused(code: int) -> tuple[Any, int]:
        return flask.jsonify({"execution": counter.hit("refused")}), 201

    web.wsgi_app = RefuseFirstWSGI(web.wsgi_app)  # type: ignore[method-assign]
    acidic.http.flask.install(web, idem)  # outside the refusing middleware
    return web
