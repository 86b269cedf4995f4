"""Django behind IdempotencyWSGIMiddleware (its WSGI application wrapped), served by
Werkzeug: the first request runs the view, a repeat replays it, another request under
the key gets 422; a job's KeyLockedError, mapped to 409 by the Django middleware that
docs/http.md shows, is not stored. One backend suffices: the middleware is the one the
Flask tests use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import acidic
import acidic.http
from tests.support.http import apps
from tests.support.http.helpers import REPLAYED, assert_problem, post
from tests.support.http.servers import serve_wsgi

django = pytest.importorskip("django")

calls: list[int] = []
locked_calls: list[int] = []


class KeyLockedAs409:
    """The Django middleware of docs/http.md: a job's KeyLockedError becomes a 409 with
    Retry-After (Django would answer 500), which acidic.http does not store."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)

    def process_exception(self, request: Any, exception: Exception) -> Any:
        from django.http import JsonResponse

        if isinstance(exception, acidic.KeyLockedError):
            return JsonResponse(
                {"detail": str(exception)}, status=409, headers={"Retry-After": "1"}
            )
        return None


def locked(request: object) -> object:
    from django.http import JsonResponse

    locked_calls.append(1)
    if len(locked_calls) == 1:
        raise acidic.KeyLockedError("key 'ride' is locked by a live run")
    return JsonResponse({"execution": len(locked_calls)}, status=201)


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
            MIDDLEWARE=[f"{__name__}.KeyLockedAs409"],
            INSTALLED_APPS=[],
            DATABASES={},
        )
        django.setup()
    if not urlpatterns:
        urlpatterns.extend([path("things", create), path("locked", locked)])


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


def test_django__a_job_s_key_locked_409_is_not_stored(tmp_path: Path) -> None:
    _configure()
    from django.core.wsgi import get_wsgi_application

    with acidic.App(f"sqlite:///{tmp_path / 'dj.sqlite3'}") as app:
        app.migrate()
        idem = apps.make_idempotency(app)
        wsgi = acidic.http.IdempotencyWSGIMiddleware(get_wsgi_application(), idem)
        with serve_wsgi(wsgi) as base, httpx.Client(base_url=base, timeout=30) as client:
            refused = post(client, "/locked", "dj-lk", body=b"{}")
            assert refused.status_code == 409
            assert refused.headers["retry-after"] == "1"
            ran = post(client, "/locked", "dj-lk", body=b"{}")
            assert ran.status_code == 201, ran.text
            assert REPLAYED not in ran.headers
            again = post(client, "/locked", "dj-lk", body=b"{}")
            assert again.headers[REPLAYED] == "true"
            assert again.content == ran.content
        idem.close()
    assert len(locked_calls) == 2
