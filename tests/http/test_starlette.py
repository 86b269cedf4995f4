"""Plain Starlette behind IdempotencyMiddleware, with a function endpoint that requires
a key through acidic.http.idempotent_request(request, required=True)."""

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

    idem = apps.make_idempotency(app)
    web = Starlette(
        routes=[Route("/things", create, methods=["POST"])],
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
