"""The examples run with no database given leave no file where they are started (issue
11, defects found in use: ``python examples/fastapi_app.py`` left
``acidic-example.sqlite3*`` untracked in the checkout). Their runs are kept in the
system's temporary directory, in the same file from one start to the next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"
RIDE = {"user_id": 1, "origin": "Kreuzberg", "target": "Mitte"}
HEADERS = {"Idempotency-Key": '"ride-1"', "Authorization": "Bearer alice"}


def _serve_once(example: str, cwd: Path, tmp: Path) -> tuple[int, str]:
    """Start the example without a database URL, book one ride, stop it: the ride's
    status code and the server's stderr."""
    env = {k: v for k, v in os.environ.items() if k != "ACIDIC_DATABASE_URL"}
    env["TMPDIR"] = str(tmp)
    log = tmp / f"{example}.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / example), "--port", "0"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), log.read_text()
        with httpx.Client(base_url=line.split()[-1], timeout=30) as client:
            status = client.post("/rides", json=RIDE, headers=HEADERS).status_code
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    return status, log.read_text()


@pytest.mark.parametrize("example", ["fastapi_app.py", "flask_app.py"])
def test_example__without_a_database_url_leaves_no_file_where_it_was_started(
    example: str, tmp_path: Path
) -> None:
    checkout, tmp = tmp_path / "checkout", tmp_path / "tmp"
    checkout.mkdir()
    tmp.mkdir()

    first, log = _serve_once(example, checkout, tmp)
    again, _ = _serve_once(example, checkout, tmp)

    assert (first, again) == (201, 201)  # the second start replays the first's ride
    assert list(checkout.iterdir()) == []
    database = tmp / "acidic-example.sqlite3"
    assert database.is_file()
    assert f"runs are kept in sqlite:///{database}" in log
