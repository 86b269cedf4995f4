"""``acidic demo``: the ride example, crashed for real in the middle of a step and resumed.

The first attempt runs in a child process (``python -m acidic._cli._demo URL KEY``) that
kills itself with SIGKILL inside ``send_receipt``, after that step's writes and before
acidic commits them. The parent then shows what the database holds (the recovery
point, and none of the step's writes), waits for the dead owner's lock to go stale
and runs the same key again: the run resumes at ``send_receipt`` without repeating
the earlier steps. Every invocation uses a fresh key, so the demo can be run any
number of times on the same database; its tables (``demo_rides``,
``demo_audit_records``, ``demo_stripe_charges``) are kept and counted per key.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import click
import sqlalchemy as sa
from rich.console import Console
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table

from .._app import DEFAULT_DATABASE_URL, App
from .._errors import KeyLockedError
from .._job import Job, step
from .._outcomes import Response
from .._run import Run
from ._root import CLIError, database_url_option, open_app, shown_url

__all__ = ["CreateRide", "demo", "run_demo"]

#: The name the demo's job is registered under (pinned: the child runs it as __main__).
JOB_NAME = "acidic.demo.CreateRide"
#: Seconds after which the crashed owner's lock is stale (the default is 90 s).
DEMO_LOCK_TIMEOUT = 1.0

metadata = sa.MetaData()
rides = sa.Table(
    "demo_rides",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(255), nullable=False, index=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("origin", sa.String(100), nullable=False),
    sa.Column("target", sa.String(100), nullable=False),
    sa.Column("charge_id", sa.String(100), nullable=True),
)
audit_records = sa.Table(
    "demo_audit_records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(255), nullable=False, index=True),
    sa.Column("ride_id", sa.Integer, nullable=False),
    sa.Column("action", sa.String(50), nullable=False),
)
# The fake payment provider's own books: it deduplicates charges by idempotency key,
# as real providers do, which is what makes an at-least-once step safe to repeat.
stripe_charges = sa.Table(
    "demo_stripe_charges",
    metadata,
    sa.Column("idempotency_key", sa.String(100), primary_key=True),
    sa.Column("charge_id", sa.String(100), nullable=False),
    sa.Column("ride_id", sa.Integer, nullable=False),
    sa.Column("amount_cents", sa.Integer, nullable=False),
)


@dataclass(slots=True)
class _Session:
    """What the demo's steps use besides their job: where to print, the fake provider's
    database and whether to crash."""

    console: Console
    engine: sa.Engine
    crash_in_send_receipt: bool = False


class _Active:
    session: _Session | None = None


def _current() -> _Session:
    if _Active.session is None:  # pragma: no cover - the steps only run inside the demo
        raise RuntimeError("the demo's job runs only inside `acidic demo`")
    return _Active.session


def _glyph(fancy: str, plain: str) -> str:
    """``fancy`` where the terminal can show it, else ``plain``."""
    return fancy if _current().console.encoding.lower().startswith("utf") else plain


def _say(text: str) -> None:
    _current().console.print(f"    {text}", highlight=False)


class CreateRide(Job):
    """The reference's ride: create the ride, charge the card, send the receipt."""

    lock_timeout = DEMO_LOCK_TIMEOUT

    user_id: int
    origin: str
    target: str

    def _begin(self, name: str) -> None:
        retry = " [yellow](retrying)[/]" if self.retrying else ""
        _current().console.print(
            f"  [bold cyan]{_glyph('▶', '>')} {name}[/]  attempt {self.attempt}{retry}",
            highlight=False,
        )

    @step
    def create_ride_and_audit_record(self, tx: sa.Connection) -> None:
        self._begin("create_ride_and_audit_record")
        inserted = tx.execute(
            rides.insert().values(
                run_key=self.key, user_id=self.user_id, origin=self.origin, target=self.target
            )
        ).inserted_primary_key
        assert inserted is not None
        ride_id = int(inserted[0])
        tx.execute(
            audit_records.insert().values(run_key=self.key, ride_id=ride_id, action="ride.created")
        )
        self.ctx["ride_id"] = ride_id
        _say(f"inserted ride #{ride_id} and its 'ride.created' audit record through tx")

    @step(transactional=False)
    def create_stripe_charge(self) -> None:
        self._begin("create_stripe_charge")
        charge_id, new = _fake_stripe_charge(
            ride_id=self.ctx["ride_id"], amount_cents=1250, idempotency_key=self.step_key
        )
        self.ctx["charge_id"] = charge_id
        what = "charged the card" if new else "the provider returned the earlier charge"
        _say(f"{what}: {charge_id} (no transaction open; idempotency key self.step_key)")

    @step
    def send_receipt(self, tx: sa.Connection) -> Response:
        self._begin("send_receipt")
        ride_id = self.ctx["ride_id"]
        tx.execute(
            rides.update().where(rides.c.id == ride_id).values(charge_id=self.ctx["charge_id"])
        )
        tx.execute(
            audit_records.insert().values(run_key=self.key, ride_id=ride_id, action="receipt.sent")
        )
        _say(f"stored charge {self.ctx['charge_id']} on ride #{ride_id}, a 'receipt.sent' record")
        if _current().crash_in_send_receipt:
            _current().console.print(
                f"    [bold red]{_glyph('💥', '!!')} SIGKILL[/] now, in the middle of "
                "send_receipt: its writes are not committed yet",
                highlight=False,
            )
            os.kill(os.getpid(), signal.SIGKILL)
        _say("receipt e-mailed (pretend)")
        return Response({"ride_id": ride_id, "charge_id": self.ctx["charge_id"]})


def _fake_stripe_charge(
    *, ride_id: int, amount_cents: int, idempotency_key: str
) -> tuple[str, bool]:
    """Charge a card at a pretend provider; the same idempotency key gives the same
    charge. Returns the charge id and whether this call created it."""
    charge_id = "ch_" + idempotency_key.removeprefix("acidic-")[:24]
    with _current().engine.begin() as conn:
        found = conn.execute(
            sa.select(stripe_charges.c.charge_id).where(
                stripe_charges.c.idempotency_key == idempotency_key
            )
        ).scalar()
        if found is not None:
            return str(found), False
        conn.execute(
            stripe_charges.insert().values(
                idempotency_key=idempotency_key,
                charge_id=charge_id,
                ride_id=ride_id,
                amount_cents=amount_cents,
            )
        )
    return charge_id, True


def _the_job() -> CreateRide:
    return CreateRide(user_id=7, origin="Alexanderplatz", target="Tempelhof")


def _open(url: str, console: Console, *, crash: bool = False) -> App:
    app = open_app(url)
    app.job(name=JOB_NAME)(CreateRide)
    _Active.session = _Session(console=console, engine=app.engine, crash_in_send_receipt=crash)
    return app


# -- the parent: what `acidic demo` runs ---------------------------------------------------


def run_demo(url: str, console: Console) -> None:
    """Run the whole demo on ``url``; raise :class:`CLIError` if it does not go as shown."""
    started = time.monotonic()
    key = f"demo-ride-{uuid.uuid4().hex[:8]}"
    app = _open(url, console)
    try:
        _introduce(app, url, key, console)
        _first_attempt_in_a_child(url, key, console)
        crashed = _show_crash(app, key, console)
        _resume(app, key, crashed, console)
        final = app.get(key)
        assert final is not None
        _show_history(final, console)
        _show_counts(app, key, console)
        again = app.run(_the_job(), key=key)
        after = app.get(key)
        assert after is not None
        console.print(
            f"\nRunning the key once more returns the stored result and runs no step: "
            f"{escape(repr(again))} (attempts still {after.attempts}).",
            highlight=False,
        )
        console.print(
            f"Done in {time.monotonic() - started:.1f} s. Inspect it with SQL: "
            f"select * from acidic_runs where idempotency_key = '{key}'",
            highlight=False,
        )
    finally:
        app.close()


def _introduce(app: App, url: str, key: str, console: Console) -> None:
    console.print(Rule("[bold]acidic demo: the ride example"))
    console.print(f"database {escape(shown_url(url))}, key [bold]{key}[/]", highlight=False)
    applied = app.migrate()
    console.print(
        "migrations applied: " + ", ".join(applied) if applied else "acidic's tables: up to date",
        highlight=False,
    )
    metadata.create_all(app.engine)
    console.print(
        "job CreateRide: create_ride_and_audit_record (transactional), create_stripe_charge "
        f"(not transactional), send_receipt (transactional); lock_timeout {DEMO_LOCK_TIMEOUT:g} s",
        highlight=False,
    )


def _first_attempt_in_a_child(url: str, key: str, console: Console) -> None:
    console.print(
        Rule("[bold]Attempt 1: a child process runs the job and is killed in send_receipt")
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.run(
        [sys.executable, "-m", "acidic._cli._demo", url, key], env=env, check=False
    )
    if child.returncode != -signal.SIGKILL:
        raise CLIError(
            f"the demo's first attempt should have been killed by SIGKILL, but its process "
            f"exited with status {child.returncode}"
        )
    console.print("  [red]the child process died of SIGKILL[/]", highlight=False)


def _show_crash(app: App, key: str, console: Console) -> Run:
    console.print(Rule("[bold]What the database holds after the crash"))
    run = app.get(key)
    if run is None or run.recovery_point != "send_receipt":
        raise CLIError(f"after the crash the run should stand at send_receipt, not {run!r}")
    console.print(
        f"  run {key}: status [bold]{run.status}[/] (its owner is dead, which acidic learns "
        f"only when the lock goes stale), recovery point [bold]{run.recovery_point}[/], "
        f"attempts {run.attempts}, context {escape(repr(run.ctx))}",
        highlight=False,
    )
    receipts, charge = _receipt_writes(app, key)
    console.print(
        f"  send_receipt's writes: {receipts} 'receipt.sent' record(s), ride charge id "
        f"{charge!r}: [bold]rolled back[/], because the step never committed",
        highlight=False,
    )
    if receipts != 0 or charge is not None:
        raise CLIError("send_receipt's writes should have been rolled back by the crash")
    return run


def _resume(app: App, key: str, crashed: Run, console: Console) -> Any:
    console.print(Rule("[bold]Attempt 2: this process runs the same key again"))
    try:
        result = app.run(_the_job(), key=key)
    except KeyLockedError as exc:
        console.print(f"  a caller right now gets KeyLockedError: {escape(str(exc))}")
        stale_at = (crashed.locked_at or dt.datetime.now(dt.UTC)) + dt.timedelta(
            seconds=DEMO_LOCK_TIMEOUT
        )
        wait = max(0.0, (stale_at - dt.datetime.now(dt.UTC)).total_seconds()) + 0.05
        console.print(
            f"  waiting {wait:.1f} s for the dead owner's lock to go stale "
            f"(lock_timeout {DEMO_LOCK_TIMEOUT:g} s) ...",
            highlight=False,
        )
        time.sleep(wait)
        console.print("  the lock is stale: taking the run over", highlight=False)
        result = app.run(_the_job(), key=key)
    console.print(
        f"  [green]resumed at send_receipt[/] without repeating the earlier steps; "
        f"result {escape(repr(result))}",
        highlight=False,
    )
    return result


def _receipt_writes(app: App, key: str) -> tuple[int, str | None]:
    with app.engine.connect() as conn:
        receipts = conn.execute(
            sa.select(sa.func.count()).where(
                audit_records.c.run_key == key, audit_records.c.action == "receipt.sent"
            )
        ).scalar_one()
        charge = conn.execute(sa.select(rides.c.charge_id).where(rides.c.run_key == key)).scalar()
        conn.rollback()
    return int(receipts), charge


def _show_history(run: Run, console: Console) -> None:
    table = Table(title=f"history of {run.key} (status {run.status})", title_justify="left")
    table.add_column("step")
    table.add_column("event")
    table.add_column("time (UTC)")
    table.add_column("attempt", justify="right")
    for event in run.history:
        style = {"succeeded": "green", "errored": "red", "halted": "yellow"}.get(event.event, "")
        table.add_row(
            event.step,
            f"[{style}]{event.event}[/]" if style else event.event,
            event.time.astimezone(dt.UTC).strftime("%H:%M:%S.%f")[:-3],
            str(event.attempt),
        )
    console.print()
    console.print(table)
    console.print(
        "  attempt 1 of send_receipt left no event: a transactional step's history commits "
        "with its writes, so the crash rolled both back",
        highlight=False,
    )


def _show_counts(app: App, key: str, console: Console) -> None:
    with app.engine.connect() as conn:
        ride_ids = [r for (r,) in conn.execute(sa.select(rides.c.id).where(rides.c.run_key == key))]
        counts = [
            ("demo_rides", "rides", len(ride_ids)),
            *(
                (
                    "demo_audit_records",
                    f"'{action}' audit records",
                    conn.execute(
                        sa.select(sa.func.count()).where(
                            audit_records.c.run_key == key, audit_records.c.action == action
                        )
                    ).scalar_one(),
                )
                for action in ("ride.created", "receipt.sent")
            ),
            (
                "demo_stripe_charges",
                "charges at the fake provider",
                conn.execute(
                    sa.select(sa.func.count()).where(stripe_charges.c.ride_id.in_(ride_ids))
                ).scalar_one(),
            ),
        ]
        conn.rollback()
    console.print()
    for table, what, count in counts:
        verdict = "[green]exactly once[/]" if count == 1 else "[bold red]NOT exactly once[/]"
        console.print(f"  {what} ({table}) for this key: {count}: {verdict}", highlight=False)
    if any(count != 1 for _, _, count in counts):
        raise CLIError(f"key {key}: a write did not happen exactly once: {counts}")


@click.command(short_help="Run the ride example: crash it in a step, then resume it.")
@database_url_option(
    "SQLAlchemy URL of the database to run the demo in "
    f"[default: {DEFAULT_DATABASE_URL}, a file in the current directory; "
    "$ACIDIC_DATABASE_URL is not used]"
)
def demo(database_url: str | None) -> None:
    """Run the ride example, crash it in the middle of a step, and resume it.

    The first attempt runs in a child process that kills itself with SIGKILL in the
    middle of the last step; the second, in this process, resumes at that step. The
    demo migrates the database, creates its own tables (demo_rides,
    demo_audit_records, demo_stripe_charges) and uses a fresh key each time, so it
    can be run again and again.
    """
    run_demo(database_url or DEFAULT_DATABASE_URL, Console(soft_wrap=True))


# -- the child: the first attempt, killed in the middle of send_receipt ------------------------


def _child(argv: list[str]) -> None:
    url, key = argv
    app = _open(url, Console(soft_wrap=True), crash=True)
    try:
        app.run(_the_job(), key=key)
    finally:
        app.close()
    raise SystemExit("the demo's child should have been killed in send_receipt")


if __name__ == "__main__":
    _child(sys.argv[1:])
