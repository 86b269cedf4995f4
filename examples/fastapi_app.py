"""An idempotent ride API with FastAPI and acidic.http, served by uvicorn.

Run it (runs are kept in $ACIDIC_DATABASE_URL, else in the SQLite file
acidic-example.sqlite3 of the system's temporary directory, kept between runs; delete it
to start afresh)::

    python examples/fastapi_app.py [--port 8000] [--database-url URL] [--crash-after-charge]

Then::

    curl -i localhost:8000/rides -H 'Idempotency-Key: "ride-1"' -H 'Authorization: Bearer alice' \\
         -H 'Content-Type: application/json' -d '{"user_id": 1, "origin": "a", "target": "b"}'

Send it again: the same response, with ``Idempotent-Replayed: true``; another body
under the same key: 422; no key: 400. With ``--crash-after-charge`` the server dies
after charging the card: start it again (without the flag) and retry the request: the
ride resumes at the receipt and the response comes back.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from rides import (
    CRASH_AFTER_CHARGE,
    EXAMPLE_DATABASE_URL,
    CreateRide,
    caller,
    database_url,
    make_app,
    shown,
)

import acidic.http
from acidic.http.fastapi import IdempotencyKey


class RideIn(BaseModel):
    user_id: int
    origin: str
    target: str


def build(database_url: str | None = None) -> FastAPI:
    """The FastAPI application, behind the idempotency middleware."""
    app = make_app(database_url)
    idem = acidic.http.Idempotency(app, caller=caller)
    api = FastAPI(title="rides")
    api.add_middleware(acidic.http.IdempotencyMiddleware, idempotency=idem)

    @api.post("/rides", status_code=201)
    def create_ride(ride: RideIn, request: IdempotencyKey) -> Any:
        # A sync endpoint: FastAPI runs it in a thread, where acidic's blocking calls belong.
        # The job's key derives from the request's: a retry resumes the same ride.
        return app.run(CreateRide(**ride.model_dump()), key=request.job_key("ride"))

    return api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--database-url",
        help=f"where runs are kept [default: $ACIDIC_DATABASE_URL, else {EXAMPLE_DATABASE_URL}]",
    )
    parser.add_argument("--crash-after-charge", action="store_true")
    args = parser.parse_args()
    if args.crash_after_charge:
        os.environ[CRASH_AFTER_CHARGE] = "1"
    url = database_url(args.database_url)
    print(f"runs are kept in {shown(url)}", file=sys.stderr, flush=True)
    api = build(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)  # connections queue from now on, before uvicorn accepts them
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(api, log_level="info")).run(sockets=[sock])


if __name__ == "__main__":
    main()
