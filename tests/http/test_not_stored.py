"""Answers that are not the outcome of the request are never stored: acidic's own 409
for a job still locked by an earlier attempt (whatever the framework), and a 429, or a
4xx with ``Retry-After``, that an inner middleware answered before the view ran. The
client's retry then runs the handler, and that response is stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
import pytest

import acidic
import acidic.http
from tests.support.http import apps
from tests.support.http.helpers import REPLAYED, assert_problem, post, record_key
from tests.support.http.servers import serve_asgi, serve_wsgi


def test_key_locked__the_409_is_not_stored_and_the_retry_runs_the_handler(
    client: httpx.Client, counter: apps.Counter, app: acidic.App
) -> None:
    """Issue 11: with Flask (``install``), the 409 was stored and replayed for good."""
    refused = post(client, "/locked", "lk")
    assert "still locked" in assert_problem(refused, 409, "key-in-use")["detail"]
    assert refused.headers["retry-after"] == "1"
    retried = post(client, "/locked", "lk")
    assert retried.status_code == 201, retried.text
    assert REPLAYED not in retried.headers
    assert retried.json() == {"execution": 2}
    replayed = post(client, "/locked", "lk")
    assert replayed.status_code == 201
    assert replayed.headers[REPLAYED] == "true"
    assert replayed.content == retried.content
    assert counter.calls["locked"] == 2
    record = app.get(record_key("lk"))
    assert record is not None
    assert record.status == "succeeded"
    assert record.attempts == 2
    assert [(e.step, e.event) for e in record.history] == [
        ("respond", "started"),
        ("respond", "errored"),
        ("respond", "started"),
        ("respond", "succeeded"),
    ]


# The middlewares decide without the database's help: one backend suffices.
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/refused/429", 429),  # a rate limit, with or without Retry-After
        ("/refused/409?retry-after=1", 409),  # a lock: "come back later"
        ("/refused/423?retry-after=2", 423),
    ],
)
def test_inner_refusal__is_not_stored_and_the_retry_runs_the_view(
    client: httpx.Client, counter: apps.Counter, app: acidic.App, target: str, status: int
) -> None:
    refused = post(client, target, "in", json_body={"a": 1})
    assert refused.status_code == status
    assert refused.content == b"refused"
    assert counter.calls["refused"] == 0
    record = app.get(record_key("in"))
    assert record is not None
    assert record.status == "failed"
    assert record.error is not None
    assert str(status) in record.error.message
    ran = post(client, target, "in", json_body={"a": 1})
    assert ran.status_code == 201, ran.text
    assert REPLAYED not in ran.headers
    again = post(client, target, "in", json_body={"a": 1})
    assert again.headers[REPLAYED] == "true"
    assert again.content == ran.content
    assert counter.calls["refused"] == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_inner_refusal__a_409_without_retry_after_is_stored_like_the_view_s_own(
    client: httpx.Client, counter: apps.Counter
) -> None:
    """A middleware's 409 cannot be told from the view's: only "retry later" is not stored."""
    first = post(client, "/refused/409", "plain")
    assert first.status_code == 409
    again = post(client, "/refused/409", "plain")
    assert again.status_code == 409
    assert again.headers[REPLAYED] == "true"
    assert counter.calls["refused"] == 0


@pytest.mark.parametrize("backend", ["sqlite"])
def test_key_locked__plain_asgi_and_wsgi_applications(
    kind: str, app: acidic.App, idem: acidic.http.Idempotency
) -> None:
    """No framework: the exception reaches the middleware, which answers 409."""
    calls: list[int] = []

    def outcome() -> bytes:
        calls.append(1)
        if len(calls) == 1:
            raise acidic.KeyLockedError("key 'ride' is locked by a live run")
        return f"execution {len(calls)}".encode()

    async def asgi(scope: Any, receive: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        body = outcome()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": body})

    def wsgi(environ: Any, start_response: Any) -> Iterable[bytes]:
        body = outcome()
        start_response("201 Created", [("content-type", "text/plain")])
        return [body]

    served = (
        serve_asgi(acidic.http.IdempotencyMiddleware(asgi, idem))
        if kind == "asgi"
        else serve_wsgi(acidic.http.IdempotencyWSGIMiddleware(wsgi, idem))
    )
    with served as base, httpx.Client(base_url=base, timeout=30) as client:
        assert_problem(post(client, "/", "plain"), 409, "key-in-use")
        ran = post(client, "/", "plain")
        assert ran.status_code == 201
        assert ran.content == b"execution 2"
        assert post(client, "/", "plain").headers[REPLAYED] == "true"
    assert len(calls) == 2
