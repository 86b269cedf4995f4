"""How long a worker waits before it tries the database again after a failure.

The delay doubles from :data:`FIRST_DELAY` up to :data:`MAX_DELAY` and is reset only
once the database has answered for :data:`RESET_AFTER` seconds in a row: a server that
restarts again and again (or a flapping network) must not bring the worker back to
retrying ten times a second after each short recovery.
"""

from __future__ import annotations

import time

__all__ = ["FIRST_DELAY", "MAX_DELAY", "RESET_AFTER", "Backoff"]

FIRST_DELAY = 0.1
MAX_DELAY = 5.0
RESET_AFTER = 30.0


class Backoff:
    """Failures in a row, and the delay before the next try."""

    def __init__(self) -> None:
        self.failures = 0
        self._healthy_since: float | None = None

    def failed(self) -> float:
        """Record a failure; the seconds to wait before trying again."""
        self.failures += 1
        self._healthy_since = None
        return float(min(FIRST_DELAY * 2.0 ** (self.failures - 1), MAX_DELAY))

    def succeeded(self) -> bool:
        """Record a success; True when this ends a streak of failures (the database
        answers again after having failed)."""
        if not self.failures:
            return False
        now = time.monotonic()
        recovered = self._healthy_since is None
        if recovered:
            self._healthy_since = now
        elif now - self._healthy_since >= RESET_AFTER:  # type: ignore[operator]
            self.failures = 0
            self._healthy_since = None
        return recovered
