"""The ride of acidic's reference example, shared by the FastAPI and Flask examples:
create the ride, charge the card (a foreign call), send the receipt."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import sqlalchemy as sa

import acidic
import acidic.http

metadata = sa.MetaData()
rides = sa.Table(
    "example_rides",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("origin", sa.String(100), nullable=False),
    sa.Column("target", sa.String(100), nullable=False),
    sa.Column("charge_id", sa.String(100), nullable=True),
    sa.Column("receipt_sent", sa.Boolean, nullable=False, default=False),
)

#: Where the examples keep their runs without ``--database-url`` or
#: ``$ACIDIC_DATABASE_URL``: in the system's temporary directory, not the current one (so
#: running an example leaves no file in a checkout), and in the same file from one start
#: to the next (so a ride interrupted by ``--crash-after-charge`` resumes after a restart).
EXAMPLE_DATABASE_URL = f"sqlite:///{Path(tempfile.gettempdir()) / 'acidic-example.sqlite3'}"

#: Set by ``--crash-after-charge``: the server SIGKILLs itself once, right after the
#: card was charged, so that you can watch the client's retry resume the ride.
CRASH_AFTER_CHARGE = "ACIDIC_EXAMPLE_CRASH_AFTER_CHARGE"


class CreateRide(acidic.Job):
    """Create the ride, charge the card, send the receipt; the response is the ride."""

    user_id: int
    origin: str
    target: str

    @acidic.step
    def create_ride(self, tx: sa.Connection) -> None:
        created = tx.execute(
            rides.insert().values(user_id=self.user_id, origin=self.origin, target=self.target)
        ).inserted_primary_key
        assert created is not None
        self.ctx["ride_id"] = created[0]

    @acidic.step(transactional=False)
    def charge(self) -> None:
        # A real payment API gets self.step_key as its own idempotency key, so the
        # repeat of this step after a crash does not charge twice.
        self.ctx["charge_id"] = f"ch_{self.step_key[-16:]}"
        if os.environ.pop(CRASH_AFTER_CHARGE, None):
            print("crashing after the charge, as asked (--crash-after-charge)", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    @acidic.step
    def send_receipt(self, tx: sa.Connection) -> acidic.Response:
        tx.execute(
            rides.update()
            .where(rides.c.id == self.ctx["ride_id"])
            .values(charge_id=self.ctx["charge_id"], receipt_sent=True)
        )
        return acidic.Response(
            {
                "ride_id": self.ctx["ride_id"],
                "charge_id": self.ctx["charge_id"],
                "origin": self.origin,
                "target": self.target,
            }
        )


def database_url(given: str | None) -> str:
    """The database the examples use: ``given``, else ``$ACIDIC_DATABASE_URL``, else
    :data:`EXAMPLE_DATABASE_URL`."""
    return given or os.environ.get("ACIDIC_DATABASE_URL") or EXAMPLE_DATABASE_URL


def shown(url: str) -> str:
    """``url`` as printed: its password hidden."""
    return sa.make_url(url).render_as_string(hide_password=True)


def make_app(given: str | None) -> acidic.App:
    """A migrated App (see :func:`database_url`) with the job registered and the rides
    table created."""
    url = database_url(given)
    # A short lock_timeout lets a retry take over the request of a killed server soon.
    app = acidic.App(url, lock_timeout=5.0)
    app.migrate()
    app.job(name="examples.CreateRide")(CreateRide)
    metadata.create_all(app.engine)
    return app


def caller(info: acidic.http.RequestInfo) -> str | None:
    """The caller identity: the bearer token (a real API would map it to an account)."""
    authorization = info.headers.get("authorization", "")
    return authorization.removeprefix("Bearer ") or None
