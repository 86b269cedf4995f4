"""Django behind IdempotencyWSGIMiddleware (its WSGI application wrapped), served by
Werkzeug: the first request runs the view, a repeat replays it, another request under
the key gets 422. One backend suffices: the middleware is the one the Flask tests use."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

import acidic
import acidic.http
from tests.support.http import apps
from tests.support.http.helpers import REPLAYED, assert_problem, post
from tests.support.http.servers import serve_wsgi

django = pytest.importorskip("django")

calls: list[int] = []


def create(request: object) -> object:
    from django.http import JsonResponse

    calls.append(1)
    found = acidic.http.idempotent_request(request)
    assert found is not None
    data = json.loads(request.body)  # type: ignore[attr-defined]
    return JsonResponse({"made": data, "key": found.key, "execution": len(calls)}, status=201)


def _configure() -> None:
    from django.conf import settings
    from django.urls import path

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="tests-only",
            ALLOWED_HOSTS=["127.0.0.1"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
            DATABASES={},
        )
        django.setup()
    if not urlpatterns:
        urlpatterns.append(path("things", create))


urlpatterns: list[object] = []


def test_django__first_request_runs_a_repeat_replays(tmp_path: Path) -> None:
    _configure()
    from django.core.wsgi import get_wsgi_application

    with acidic.App(f"sqlite:///{tmp_path / 'dj.sqlite3'}") as app:
        app.migrate()
        idem = apps.make_idempotency(app)
        wsgi = acidic.http.IdempotencyWSGIMiddleware(get_wsgi_application(), idem)
        with serve_wsgi(wsgi) as base, httpx.Client(base_url=base, timeout=30) as client:
            first = post(client, "/things", "dj-1", json_body={"b": 1, "a": 2})
            assert first.status_code == 201, first.text
            assert first.json()["key"] == "dj-1"
            again = post(
                client,
                "/things",
                "dj-1",
                body=b'{"a": 2, "b": 1}',
                headers={"content-type": "application/json"},
            )
            assert again.headers[REPLAYED] == "true"
            assert again.content == first.content
            assert_problem(post(client, "/things", "dj-1", json_body={"a": 3}), 422, "key-reused")
        idem.close()
    assert len(calls) == 1
