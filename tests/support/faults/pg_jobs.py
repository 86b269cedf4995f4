"""Jobs of the tests that kill PostgreSQL sessions or stop the server
(tests/faults/test_pg_terminate.py, tests/faults/test_pg_down.py)."""

from __future__ import annotations

import time

import sqlalchemy as sa

import acidic
from tests.support.jobs import effects


class SleepInTx(acidic.Job):
    """Writes its effect, then (first attempt only) waits inside its open transaction:
    in Python (``where="python"``) or in a statement (``where="statement"``)."""

    where: str
    seconds: float

    @acidic.step
    def work(self, tx: sa.Connection) -> acidic.Response:
        tx.execute(effects.insert().values(run_key=self.key, step="work"))
        if self.attempt == 1:
            if self.where == "python":
                time.sleep(self.seconds)
            else:
                tx.execute(sa.text("SELECT pg_sleep(:s)"), {"s": self.seconds})
        return acidic.Response(self.attempt)
