"""The rows of the Idempotency-Key semantics, through real servers (uvicorn and
Werkzeug), on PostgreSQL, SQLite and MariaDB."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

import acidic
import acidic.http
from tests.support.http import apps
from tests.support.http.helpers import REPLAYED, assert_problem, post, record_key, stored_headers
from tests.support.http.servers import serve_asgi, serve_wsgi


def test_first_request__runs_the_handler_and_a_repeat_replays_its_response(
    client: httpx.Client, counter: apps.Counter, app: acidic.App
) -> None:
    body = b'{"amount": 100, "currency": "eur"}'
    json_type = {"content-type": "application/json"}
    first = post(client, "/echo", "pay-1", body=body, headers=json_type)
    assert first.status_code == 201
    assert first.content == body
    assert REPLAYED not in first.headers
    assert "set-cookie" in first.headers
    for _ in range(2):
        again = post(client, "/echo", "pay-1", body=body, headers=json_type)
        assert again.status_code == 201
        assert again.content == first.content
        assert again.headers[REPLAYED] == "true"
        assert stored_headers(again) == stored_headers(first)
        assert again.headers["x-execution"] == "1"
        assert again.headers["location"] == "/things/1"
        assert "set-cookie" not in again.headers  # cookies are not stored
    assert counter.calls["echo"] == 1
    run = app.get(record_key("pay-1"))
    assert run is not None
    assert run.job == "acidic.http.request"
    assert run.status == "succeeded"
    assert run.result["status"] == 201
    assert run.result["encoding"] == "utf-8"
    assert run.args["method"] == "POST"
    assert run.args["path"] == "/echo"
    assert [(e.step, e.event) for e in run.history] == [
        ("respond", "started"),
        ("respond", "succeeded"),
    ]


def test_same_key_other_request__is_refused_with_422(
    client: httpx.Client, counter: apps.Counter
) -> None:
    assert post(client, "/echo", "k", json_body={"a": 1}).status_code == 201
    other_body = post(client, "/echo", "k", json_body={"a": 2})
    assert "another body" in assert_problem(other_body, 422, "key-reused")["detail"]
    other_path = post(client, "/status/201", "k", json_body={"a": 1})
    assert "POST /echo" in assert_problem(other_path, 422, "key-reused")["detail"]
    other_method = post(client, "/echo", "k", json_body={"a": 1}, method="PATCH")
    assert_problem(other_method, 422, "key-reused")
    other_query = post(client, "/echo?x=1", "k", json_body={"a": 1})
    assert_problem(other_query, 422, "key-reused")
    assert counter.calls["echo"] == 1
    # The refusals stored nothing: the first response is still replayed.
    assert post(client, "/echo", "k", json_body={"a": 1}).headers[REPLAYED] == "true"


def test_json_bodies__key_order_and_spacing_do_not_change_the_fingerprint(
    client: httpx.Client, counter: apps.Counter
) -> None:
    json_type = {"content-type": "application/json"}
    first = post(
        client, "/echo", "j", body=b'{"a":1,"b":{"x":[1,2],"y":"\xc3\xa9"}}', headers=json_type
    )
    assert first.status_code == 201
    reordered = post(
        client,
        "/echo",
        "j",
        body=b'{ "b" : {"y":"\\u00e9", "x":[1, 2]},\n "a":1 }',
        headers=json_type,
    )
    assert reordered.status_code == 201
    assert reordered.headers[REPLAYED] == "true"
    assert reordered.content == first.content  # the first response, byte for byte
    one_byte = post(
        client, "/echo", "j", body=b'{"a":2,"b":{"x":[1,2],"y":"\xc3\xa9"}}', headers=json_type
    )
    assert_problem(one_byte, 422, "key-reused")
    assert counter.calls["echo"] == 1


def test_raw_bodies__one_byte_of_difference_gives_422(
    client: httpx.Client, counter: apps.Counter
) -> None:
    text = {"content-type": "text/plain"}
    assert post(client, "/echo", "raw", body=b"hello world", headers=text).status_code == 201
    assert post(client, "/echo", "raw", body=b"hello world", headers=text).headers[REPLAYED]
    assert_problem(
        post(client, "/echo", "raw", body=b"hello worle", headers=text), 422, "key-reused"
    )
    assert_problem(
        post(client, "/echo", "raw", body=b"hello world ", headers=text), 422, "key-reused"
    )
    assert counter.calls["echo"] == 1


def test_in_flight__the_same_key_gets_409_then_the_stored_response(
    client: httpx.Client, counter: apps.Counter, base_url: str
) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as other:
        import threading

        results: list[httpx.Response] = []
        first = threading.Thread(
            target=lambda: results.append(post(other, "/slow?seconds=1", "fly"))
        )
        first.start()
        deadline = time.monotonic() + 5
        while counter.calls["slow"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        busy = post(client, "/slow?seconds=1", "fly")
        # 409, not the replay a caller that waited for the handler would have got.
        assert_problem(busy, 409, "key-in-use")
        assert busy.headers["retry-after"] == "1"
        first.join()
    assert results[0].status_code == 201
    after = post(client, "/slow?seconds=1", "fly")
    assert after.status_code == 201
    assert after.headers[REPLAYED] == "true"
    assert after.content == results[0].content
    assert counter.calls["slow"] == 1


def test_missing_key__passes_through_unless_required(
    client: httpx.Client, counter: apps.Counter, idem: acidic.http.Idempotency
) -> None:
    assert post(client, "/echo", body=b"x").status_code == 201
    assert post(client, "/echo", body=b"x").status_code == 201
    assert counter.calls["echo"] == 2  # no key, no idempotency
    assert_problem(post(client, "/required", body=b"x"), 400, "missing-key")
    assert counter.calls["required"] == 0
    with_key = post(client, "/required", "req", body=b"x")
    assert with_key.status_code == 201
    assert with_key.json() == {"key": "req", "execution": 1}
    assert post(client, "/required", "req", body=b"x").headers[REPLAYED] == "true"
    # Required by the policy, per endpoint: (method, path) -> bool.
    idem.required = lambda method, path: path.startswith("/echo")
    assert_problem(post(client, "/echo", body=b"x"), 400, "missing-key")
    assert post(client, "/status/201", body=b"x").status_code == 201
    assert counter.calls["echo"] == 2
    # Methods outside the policy pass through, key or not.
    assert client.get("/echo", headers={"Idempotency-Key": '""'}).status_code == 405


def test_statuses__4xx_is_stored_5xx_and_errors_are_not(
    client: httpx.Client, counter: apps.Counter, app: acidic.App, kind: str
) -> None:
    first = post(client, "/status/409", "c4")
    assert first.status_code == 409
    assert first.json() == {"code": 409, "execution": 1}
    replay = post(client, "/status/409", "c4")
    assert replay.headers[REPLAYED] == "true"
    assert replay.content == first.content
    for n in (2, 3):
        unavailable = post(client, "/status/503", "c5")
        assert unavailable.status_code == 503
        assert unavailable.json() == {"code": 503, "execution": n}
        assert REPLAYED not in unavailable.headers
    run = app.get(record_key("c5"))
    assert run is not None
    assert run.status == "failed"
    assert run.error is not None
    assert "503" in run.error.message
    assert run.attempts == 2
    for _ in range(2):
        # uvicorn closes the connection after an application error: do not reuse it.
        failed = post(client, "/raise", "boom", headers={"connection": "close"})
        assert failed.status_code == 500
    assert counter.calls["raise"] == 2
    run = app.get(record_key("boom"))
    assert run is not None
    assert run.status == "failed"
    assert run.error is not None
    # FastAPI lets the exception through the middleware; Flask turns it into a 500 first.
    expected = "builtins.RuntimeError" if kind == "asgi" else "acidic.http.NotStored"
    assert run.error.type == expected


def test_keys__are_scoped_per_caller(client: httpx.Client, counter: apps.Counter) -> None:
    alice = post(client, "/echo", "same", body=b"a", user="alice")
    bob = post(client, "/echo", "same", body=b"b", user="bob")
    assert alice.status_code == bob.status_code == 201
    assert counter.calls["echo"] == 2
    assert post(client, "/echo", "same", body=b"a", user="alice").content == b"a"
    assert post(client, "/echo", "same", body=b"b", user="bob").content == b"b"
    assert_problem(post(client, "/echo", "same", body=b"a", user="bob"), 422, "key-reused")
    assert counter.calls["echo"] == 2


def test_keys__expire(
    client: httpx.Client, counter: apps.Counter, idem: acidic.http.Idempotency, app: acidic.App
) -> None:
    assert idem.expires == 24 * 3600  # the default
    assert post(client, "/echo", "old", body=b"1").status_code == 201
    assert post(client, "/echo", "gone", body=b"1").status_code == 201
    assert post(client, "/status/503", "failing", body=b"1").status_code == 503
    assert post(client, "/echo", "young", body=b"1").status_code == 201
    _age(app, ["old", "gone", "failing"], dt.timedelta(hours=25))
    _age(app, ["young"], dt.timedelta(hours=23))
    assert post(client, "/echo", "young", body=b"1").headers[REPLAYED] == "true"
    assert_problem(post(client, "/echo", "young", body=b"2"), 422, "key-reused")
    # An expired key is a new key: another request may use it, and it runs.
    fresh = post(client, "/echo", "old", body=b"2")
    assert fresh.status_code == 201
    assert REPLAYED not in fresh.headers
    assert post(client, "/echo", "old", body=b"2").headers[REPLAYED] == "true"
    assert counter.calls["echo"] == 4
    assert idem.purge_expired() == 2  # "gone" and "failing"; "old" is fresh again
    assert app.get(record_key("gone")) is None
    assert app.get(record_key("failing")) is None
    assert app.get(record_key("old")) is not None
    assert app.get(record_key("young")) is not None


def _age(app: acidic.App, keys: list[str], by: dt.timedelta) -> None:
    """Move the records' times back by ``by``, as if they had been stored that long ago."""
    from acidic._storage._schema import runs

    with app.engine.begin() as conn:
        for key in keys:
            row = conn.execute(
                sa.select(runs.c.created_at, runs.c.last_run_at, runs.c.finished_at).where(
                    runs.c.idempotency_key == record_key(key)
                )
            ).one()
            conn.execute(
                runs.update()
                .where(runs.c.idempotency_key == record_key(key))
                .values(
                    created_at=row.created_at - by,
                    last_run_at=row.last_run_at and row.last_run_at - by,
                    finished_at=row.finished_at and row.finished_at - by,
                )
            )


def test_key_header__odd_characters_and_bare_values_are_accepted(
    client: httpx.Client, counter: apps.Counter, app: acidic.App
) -> None:
    odd = ' a "quoted" \\ key: /?#%;,= ~ '
    assert post(client, "/echo", odd, body=b"1").status_code == 201
    assert post(client, "/echo", odd, body=b"1").headers[REPLAYED] == "true"
    assert app.get(record_key(odd)) is not None
    bare = {"Idempotency-Key": "8e03978e-40d5-43e8-bc93-6894a57f9324"}
    assert client.post("/echo", content=b"2", headers=bare).status_code == 201
    assert client.post("/echo", content=b"2", headers=bare).headers[REPLAYED] == "true"
    # The bare form and the sf-string form name the same key.
    quoted = post(client, "/echo", "8e03978e-40d5-43e8-bc93-6894a57f9324", body=b"2")
    assert quoted.headers[REPLAYED] == "true"
    longest = "k" * 200
    assert post(client, "/echo", longest, body=b"3").status_code == 201
    assert counter.calls["echo"] == 3


# These requests are refused before the database is touched: one backend suffices.
@pytest.mark.parametrize("backend", ["sqlite"])
def test_key_header__malformed_empty_long_or_repeated_gives_400(
    client: httpx.Client, counter: apps.Counter
) -> None:
    cases = {
        '""': "empty",
        '"' + "k" * 201 + '"': "limit is 200",
        '"unterminated': "closing double quote",
        '"a", "b"': "single string",
        "a b": "character ' '",
        '"bad\\escape"': "backslash",
        '"a";p=1': "single string",
    }
    for value, words in cases.items():
        response = client.post("/echo", content=b"x", headers={"Idempotency-Key": value})
        assert words in assert_problem(response, 400, "invalid-key")["detail"], value
    repeated = client.post(
        "/echo", content=b"x", headers=[("Idempotency-Key", '"a"'), ("Idempotency-Key", '"a"')]
    )
    assert_problem(repeated, 400, "invalid-key")
    non_ascii = client.post(
        "/echo", content=b"x", headers=[(b"Idempotency-Key", '"caf\xe9"'.encode("latin-1"))]
    )
    assert_problem(non_ascii, 400, "invalid-key")
    assert counter.calls["echo"] == 0


def test_bodies__binary_streamed_and_large_responses(
    client: httpx.Client, counter: apps.Counter, app: acidic.App
) -> None:
    binary = post(client, "/binary", "bin")
    assert binary.content == bytes(range(256))
    replay = post(client, "/binary", "bin")
    assert replay.headers[REPLAYED] == "true"
    assert replay.content == bytes(range(256))
    assert replay.headers["content-type"] == "application/octet-stream"
    run = app.get(record_key("bin"))
    assert run is not None
    assert run.result["encoding"] == "base64"
    # A body sent in several chunks is stored whole and replayed in one.
    streamed = post(client, "/stream", "chunks")
    assert streamed.text.count("part") == 5
    assert post(client, "/stream", "chunks").content == streamed.content
    assert counter.calls["stream"] == 1
    # Larger than max_response_size (64 KiB here): sent whole, not stored, so a retry
    # runs the handler again.
    for n in (1, 2):
        big = post(client, "/big?size=70000", "big")
        assert big.status_code == 200
        assert len(big.content) == 70000
        assert big.headers["x-execution"] == str(n)
        assert REPLAYED not in big.headers
    run = app.get(record_key("big"))
    assert run is not None
    assert run.status == "failed"
    assert run.error is not None
    assert "max_response_size" in run.error.message
    # An event stream is passed through, never stored.
    for n in (1, 2):
        assert post(client, "/events", "sse").text == f"data: {n}\n\n"
    # A request body larger than max_request_size (256 KiB here) is refused before
    # anything runs.
    assert_problem(post(client, "/echo", "huge", body=b"x" * 300_000), 413, "request-too-large")
    assert counter.calls["echo"] == 0


def test_concurrent_identical_requests__run_the_handler_once(
    base_url: str, counter: apps.Counter
) -> None:
    import concurrent.futures

    def call(_: int) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=30) as c:
            return post(c, "/slow?seconds=0.5", "race", json_body={"n": 1})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, range(8)))
    assert counter.calls["slow"] == 1
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {201, 409}, codes
    ran = [r for r in responses if r.status_code == 201 and REPLAYED not in r.headers]
    assert len(ran) == 1
    for r in responses:
        if r.status_code == 409:
            assert_problem(r, 409, "key-in-use")
        else:
            assert r.content == ran[0].content


def test_client_timeout__the_retry_gets_the_first_execution_s_response(
    base_url: str, counter: apps.Counter
) -> None:
    """A client that gave up waiting does not cancel the handler: its retries get 409
    while the handler runs, then the response of that one execution."""
    with (
        httpx.Client(base_url=base_url, timeout=0.3) as impatient,
        pytest.raises(httpx.TimeoutException),
    ):
        post(impatient, "/slow?seconds=1", "timeout", json_body={"n": 1})
    with httpx.Client(base_url=base_url, timeout=30) as client:
        deadline = time.monotonic() + 10
        while True:
            response = post(client, "/slow?seconds=1", "timeout", json_body={"n": 1})
            if response.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert response.status_code == 201
    # Replayed, unless the first request was dropped before its handler started (a
    # loaded machine; an ASGI server then runs nothing): either way, one execution.
    assert response.json() == {"execution": 1}
    assert counter.calls["slow"] == 1


def test_store_unavailable__answers_503_and_runs_nothing(kind: str, tmp_path: Path) -> None:
    """acidic's tables missing (never migrated): nothing can be recorded, so nothing runs."""
    counter = apps.Counter()
    with acidic.App(f"sqlite:///{tmp_path / 'empty.sqlite3'}") as bare:
        idem = apps.make_idempotency(bare)
        make, serve = (
            (apps.make_asgi, serve_asgi) if kind == "asgi" else (apps.make_wsgi, serve_wsgi)
        )
        with serve(make(bare, idem, counter)) as base, httpx.Client(base_url=base) as client:
            response = post(client, "/echo", "k", body=b"x")
            assert_problem(response, 503, "storage-unavailable")
            assert response.headers["retry-after"] == "1"
            assert post(client, "/echo", body=b"x").status_code == 201  # no key: not involved
        idem.close()
    assert counter.calls["echo"] == 1


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("kind", ["asgi"])
def test_record_given_to_a_worker__fails_at_once_and_the_key_still_works(
    client: httpx.Client, counter: apps.Counter, app: acidic.App
) -> None:
    import threading

    assert post(client, "/status/503", "w").status_code == 503
    app.retry(record_key("w"))  # hands the failed record to the workers of its queue
    worker = app.worker(poll_interval=0.05)
    thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while app.get(record_key("w")).status != "failed":  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(timeout=10)
    run = app.get(record_key("w"))
    assert run is not None
    assert run.error is not None
    assert "HTTP idempotency records" in run.error.message
    assert post(client, "/status/503", "w").json() == {"code": 503, "execution": 2}
