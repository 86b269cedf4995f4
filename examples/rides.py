"""The ride of acidic's reference example, shared by the FastAPI and Flask examples:
create the ride, charge the card (a foreign call), send the receipt."""

from __future__ import annotations

import os
import signal

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


def make_app(database_url: str | None) -> acidic.App:
    """A migrated App (``$ACIDIC_DATABASE_URL``, else ./acidic-example.sqlite3) with the
    job registered and the rides table created."""
    url = (
        database_url or os.environ.get("ACIDIC_DATABASE_URL") or "sqlite:///acidic-example.sqlite3"
    )
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
