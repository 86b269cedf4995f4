"""The examples in examples/ start with one command and serve an idempotent API."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"
RIDE = {"user_id": 1, "origin": "Kreuzberg", "target": "Mitte"}


@pytest.mark.parametrize("example", ["fastapi_app.py", "fastapi_async.py", "flask_app.py"])
def test_example__serves_an_idempotent_ride_api(example: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'example.sqlite3'}"
    log = tmp_path / "server.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / example), "--port", "0", "--database-url", url],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        _exercise(proc)
    except BaseException as exc:
        exc.add_note(f"server log:\n{log.read_text()}")
        raise
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _exercise(proc: subprocess.Popen[str]) -> None:
    """Call the example's API as a client would."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on "), line
    base = line.split()[-1]
    headers = {"Idempotency-Key": '"ride-1"', "Authorization": "Bearer alice"}
    with httpx.Client(base_url=base, timeout=30) as client:
        first = client.post("/rides", json=RIDE, headers=headers)
        assert first.status_code == 201, first.text
        assert first.json()["ride_id"] == 1
        again = client.post("/rides", json=RIDE, headers=headers)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content
        other = client.post("/rides", json={**RIDE, "user_id": 2}, headers=headers)
        assert other.status_code == 422
        bob = client.post("/rides", json=RIDE, headers={**headers, "Authorization": "Bearer bob"})
        assert bob.json()["ride_id"] == 2  # keys are per caller
        assert client.post("/rides", json=RIDE).status_code == 400
