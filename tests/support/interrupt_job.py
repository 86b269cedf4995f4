"""An inline ``app.run`` to interrupt with Ctrl-C (SIGINT):
``python -m tests.support.interrupt_job URL KEY MARKER``.

The job's second step creates the file MARKER and sleeps (on its first attempt only),
so that the parent can send SIGINT while the step runs. ``KeyboardInterrupt`` is not
caught here: it must propagate out of ``app.run`` and end the process as Python does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import sqlalchemy as sa

import acidic


class Interruptible(acidic.Job):
    """first (tx), wait (no tx: sleeps on attempt 1 after touching ``marker``), last."""

    marker: str

    @acidic.step
    def first(self, tx: sa.Connection) -> None:
        self.ctx["first"] = self.attempt

    @acidic.step(transactional=False)
    def wait(self) -> None:
        if self.attempt == 1:
            Path(self.marker).touch()
            time.sleep(120)

    @acidic.step
    def last(self, tx: sa.Connection) -> acidic.Response:
        return acidic.Response({"attempt": self.attempt, "first": self.ctx["first"]})


def make_app(url: str) -> acidic.App:
    app = acidic.App(url)
    app.job(name="Interruptible")(Interruptible)
    return app


def main() -> None:
    url, key, marker = sys.argv[1:4]
    app = make_app(url)
    try:
        app.run(Interruptible(marker=marker), key=key)
    finally:
        app.close()


if __name__ == "__main__":
    main()
