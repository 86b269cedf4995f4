"""How a worker's dispatcher learns that there may be runs to claim.

One listener thread per process (on PostgreSQL) hears the NOTIFY of every enqueue and
hands the wake-up to the dispatcher, which claims only for free executor slots. An
executor that finishes a run claims the next one itself; when that claim finds nothing
and no notification came meanwhile, the dispatcher (woken because the slot is free)
skips its own claim, which would find nothing either: with runs arriving one by one,
that claim was a statement per run that only ever came back empty.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._backoff import Backoff

if TYPE_CHECKING:
    from .._engine import Manager

__all__ = ["Wakeups", "listen"]

log = logging.getLogger("acidic.worker")


class Wakeups:
    """The dispatcher's wake-up (``event``), how many notifications arrived, and
    whether an executor has just found every queue empty.

    Which queue was notified does not reorder the claims: the dispatcher keeps its
    round-robin, or a queue that keeps receiving runs (notified between every two
    claims) would always go first and starve a quiet queue's due runs."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._heard = 0  # notifications so far
        self._drained = False

    def notified(self, queue: str) -> None:
        """The listener heard of a new run in ``queue``: wake the dispatcher to claim."""
        with self._lock:
            self._heard += 1
            self._drained = False
        self.event.set()

    @property
    def heard(self) -> int:
        """How many notifications arrived so far (read before a claim)."""
        return self._heard

    def drained(self, heard_before: int) -> None:
        """An executor's claim found nothing; ``heard_before`` is :attr:`heard` from
        before that claim. Unless a notification arrived since, the dispatcher's next
        claim (on the free slot's wake-up) is skipped."""
        with self._lock:
            if self._heard == heard_before:
                self._drained = True

    def take_drained(self) -> bool:
        """Whether to skip the dispatcher's claim this once (see :meth:`drained`)."""
        with self._lock:
            drained, self._drained = self._drained, False
        return drained


def listen(
    manager: Manager, queues: Sequence[str], wakeups: Wakeups, stopped: threading.Event
) -> None:
    """The listener thread: hand each notification of one of ``queues`` to the
    dispatcher, reconnecting (backing off) when the connection is lost."""
    backoff = Backoff()
    while not stopped.is_set():
        try:
            for queue in manager.notifications(queues, stopped.is_set) or ():
                wakeups.notified(queue)
                backoff.succeeded()
        except Exception as exc:
            delay = backoff.failed()
            # The first loss of a streak is worth a line; the dispatcher's claims
            # (which poll meanwhile) report the outage itself.
            log.log(
                logging.WARNING if backoff.failures == 1 else logging.DEBUG,
                "notification connection lost (%s); reconnecting in %.1f s",
                manager.describe_failure(exc),
                delay,
            )
            stopped.wait(delay)
