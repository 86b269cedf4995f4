"""A server killed (SIGKILL) in the middle of a request whose handler runs a multi-step
acidic job: the client's retry resumes the job at its recovery point, its
transactional work is done once, and the final response is returned and stored."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

import acidic
from tests.support import jobs
from tests.support.http.helpers import REPLAYED, job_key, post, record_key

RIDE = {"user_id": 7, "origin": "Kreuzberg", "target": "Mitte"}


@contextlib.contextmanager
def server(
    kind: str, url: str, crash: str | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    env = {k: v for k, v in os.environ.items() if k != "ACIDIC_TEST_CRASH"}
    if crash:
        env["ACIDIC_TEST_CRASH"] = crash
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.http.serve", kind, url],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("port "), line
        yield f"http://127.0.0.1:{line.split()[1]}", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def wait_listening(base: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(base + "/", timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_killed_server__the_retry_resumes_the_job_and_returns_its_response(
    kind: str, app: acidic.App, database_url: str
) -> None:
    with server(kind, database_url, crash="send_receipt:written") as (base, proc):
        wait_listening(base)
        with httpx.Client(base_url=base, timeout=30) as client, pytest.raises(httpx.TransportError):
            post(client, "/rides", "ride-1", json_body=RIDE)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    ride_key = job_key("ride-1", "ride")
    # The ride was created and committed; the receipt's transaction died with the server.
    assert jobs.effect_counts(app.engine, ride_key) == {"create_ride": 1}
    with server(kind, database_url) as (base, _):
        wait_listening(base)
        with httpx.Client(base_url=base, timeout=30) as client:
            refused = 0
            deadline = time.monotonic() + 20
            while True:
                response = post(client, "/rides", "ride-1", json_body=RIDE)
                if response.status_code != 409 or time.monotonic() > deadline:
                    break
                refused += 1  # the dead server's locks are still live: retry later
                time.sleep(float(response.headers["retry-after"]) / 4)
            assert response.status_code == 201, response.text
            assert REPLAYED not in response.headers
            result = response.json()
            assert set(result) == {"ride_id", "charge_id"}
            again = post(client, "/rides", "ride-1", json_body=RIDE)
            assert again.status_code == 201
            assert again.headers[REPLAYED] == "true"
            assert again.content == response.content
    assert jobs.effect_counts(app.engine, ride_key) == {"create_ride": 1, "send_receipt": 1}
    ride = jobs.get_run(app, ride_key)
    assert ride.status == "succeeded"
    assert ride.result == result
    record = jobs.get_run(app, record_key("ride-1"))
    assert record.status == "succeeded"
    # The killed request, then the retry that took it over. Seen twice under CI load: 3,
    # most likely a retry that took the record over once its lock was stale but found the
    # dead server's ride job still locked (the two locks expire apart) and answered 409.
    # The effects and the response above are what must hold exactly.
    assert record.attempts >= 2
