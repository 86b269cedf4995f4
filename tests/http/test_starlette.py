"""Plain Starlette behind IdempotencyMiddleware, with a function endpoint that requires
a key through acidic.http.idempotent_request(request, required=True), and one whose job
is still locked on its first call."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import acidic
import acidic.http
from tests.support.http import apps
from tests.support.http.helpers import REPLAYED, assert_problem, post
from tests.support.http.servers import serve_asgi


@pytest.fixture
def starlette_url(app: acidic.App) -> Iterator[str]:
    calls: list[int] = []

    async def create(request: Request) -> Response:
        found = acidic.http.idempotent_request(request, required=True)
        assert found is not None
        calls.append(1)
        return JSONResponse({"key": found.key, "execution": len(calls)}, status_code=201)

    async def locked(request: Request) -> Response:
        calls.append(1)
        if len(calls) == 1:
            raise acidic.KeyLockedError("key 'ride' is locked by a live run")
        return JSONResponse({"execution": len(calls)}, status_code=201)

    idem = apps.make_idempotency(app)
    web = Starlette(
        routes=[
            Route("/things", create, methods=["POST"]),
            Route("/locked", locked, methods=["POST"]),
        ],
        middleware=[Middleware(acidic.http.IdempotencyMiddleware, idempotency=idem)],
    )
    with serve_asgi(web) as url:
        yield url
    idem.close()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_starlette__function_endpoint_requires_a_key_and_replays(starlette_url: str) -> None:
    with httpx.Client(base_url=starlette_url, timeout=30) as client:
        assert_problem(post(client, "/things", body=b"{}"), 400, "missing-key")
        first = post(client, "/things", "s-1", json_body={"a": 1})
        assert first.status_code == 201
        assert first.json() == {"key": "s-1", "execution": 1}
        again = post(client, "/things", "s-1", json_body={"a": 1})
        assert again.headers[REPLAYED] == "true"
        assert again.content == first.content


@pytest.mark.parametrize("backend", ["sqlite"])
def test_starlette__a_job_s_key_locked_error_is_a_409_not_stored(starlette_url: str) -> None:
    with httpx.Client(base_url=starlette_url, timeout=30) as client:
        assert_problem(post(client, "/locked", "s-lk"), 409, "key-in-use")
        ran = post(client, "/locked", "s-lk")
        assert ran.status_code == 201
        assert ran.json() == {"execution": 2}
        again = post(client, "/locked", "s-lk")
        assert again.headers[REPLAYED] == "true"
        assert again.content == ran.content
