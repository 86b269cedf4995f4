"""Fixtures of the HTTP tests: the test API (tests/support/http/apps.py) served for real, as
FastAPI on uvicorn (``asgi``) and Flask on Werkzeug (``wsgi``), on each backend of
tests/conftest.py, and an httpx client for it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import acidic
import acidic.http
from tests.support.http import apps
from tests.support.http.servers import serve_asgi, serve_wsgi


@pytest.fixture(params=["asgi", "wsgi"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def counter() -> apps.Counter:
    return apps.Counter()


@pytest.fixture
def idem(app: acidic.App) -> Iterator[acidic.http.Idempotency]:
    idempotency = apps.make_idempotency(app)
    yield idempotency
    idempotency.close()


@pytest.fixture
def base_url(
    kind: str, app: acidic.App, idem: acidic.http.Idempotency, counter: apps.Counter
) -> Iterator[str]:
    if kind == "asgi":
        with serve_asgi(apps.make_asgi(app, idem, counter)) as url:
            yield url
    else:
        with serve_wsgi(apps.make_wsgi(app, idem, counter)) as url:
            yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        yield http
