"""An idempotent ride API on asyncio: an ``async def`` FastAPI view awaits
``app.run_async`` of an async job whose steps write ORM objects through an
``AsyncSession``, behind acidic.http's middleware (itself on the asyncio driver).

Needs ``pip install 'acidic[async]'``. Run it (runs and rides are kept in
$ACIDIC_DATABASE_URL, else in the SQLite file acidic-example-async.sqlite3 of the
system's temporary directory)::

    python examples/fastapi_async.py [--port 8000] [--database-url URL]

Then::

    curl -i localhost:8000/rides -H 'Idempotency-Key: "ride-1"' -H 'Authorization: Bearer alice' \\
         -H 'Content-Type: application/json' -d '{"user_id": 1, "origin": "a", "target": "b"}'

Send it again: the same response, with ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from rides import caller, shown
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import acidic
import acidic.http
from acidic.http.fastapi import IdempotencyKey

EXAMPLE_DATABASE_URL = f"sqlite:///{Path(tempfile.gettempdir()) / 'acidic-example-async.sqlite3'}"


class Base(DeclarativeBase):
    pass


class Ride(Base):
    __tablename__ = "async_rides"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    user_id: Mapped[int]
    origin: Mapped[str] = mapped_column(sa.String(100))
    target: Mapped[str] = mapped_column(sa.String(100))
    charge_id: Mapped[str | None] = mapped_column(sa.String(100))


class CreateRide(acidic.Job):
    """Create the ride, charge the card (a foreign call), record the charge."""

    user_id: int
    origin: str
    target: str

    @acidic.step
    async def create_ride(self, tx: AsyncSession) -> None:
        ride = Ride(user_id=self.user_id, origin=self.origin, target=self.target)
        tx.add(ride)
        await tx.flush()  # the id, in the step's transaction; acidic commits it
        self.ctx["ride_id"] = ride.id

    @acidic.step(transactional=False)
    async def charge_card(self) -> None:
        await asyncio.sleep(0.01)  # a payment API, called with self.step_key as its key
        self.ctx["charge_id"] = "ch_" + hashlib.sha256(self.step_key.encode()).hexdigest()[:16]

    @acidic.step
    async def record_charge(self, tx: AsyncSession) -> acidic.Response:
        ride = await tx.get_one(Ride, self.ctx["ride_id"])
        ride.charge_id = self.ctx["charge_id"]  # flushed and committed by acidic
        return acidic.Response({"ride_id": ride.id, "charge_id": ride.charge_id})


class RideIn(BaseModel):
    user_id: int
    origin: str
    target: str


def build(database_url: str) -> FastAPI:
    """The FastAPI application, behind the idempotency middleware."""
    app = acidic.App(database_url)
    app.job(name="examples.AsyncCreateRide")(CreateRide)
    app.migrate()
    Base.metadata.create_all(app.engine)
    idem = acidic.http.Idempotency(app, caller=caller)
    api = FastAPI(title="rides (asyncio)")
    api.add_middleware(acidic.http.IdempotencyMiddleware, idempotency=idem)

    @api.post("/rides", status_code=201)
    async def create_ride(ride: RideIn, request: IdempotencyKey) -> Any:
        # On the event loop: the job's steps are awaited, no thread is used.
        return await app.run_async(CreateRide(**ride.model_dump()), key=request.job_key("ride"))

    return api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    url = args.database_url or EXAMPLE_DATABASE_URL
    print(f"runs are kept in {shown(url)}", file=sys.stderr, flush=True)
    api = build(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(api, log_level="info")).run(sockets=[sock])


if __name__ == "__main__":
    main()
