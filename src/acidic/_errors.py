"""The errors acidic raises.

Every error acidic raises on its own account derives from :class:`AcidicError`, the
errors of the optional modules too (drawn below with their module's name: they are not
in ``acidic.__all__``). Exceptions raised by a step's own code are never wrapped: they
leave :meth:`acidic.App.run` unchanged.

    AcidicError
    ├── JobDefinitionError          the job class is malformed (also a TypeError)
    ├── UnknownJobError             the job is not registered with this App (also a LookupError)
    ├── UnknownKeyError             no run has that key (also a LookupError)
    ├── InvalidKeyError             an empty or over-long idempotency key (also a ValueError)
    ├── InvalidArgumentError        a bad argument to a call (also a ValueError, also a TypeError)
    ├── SerializationError          a value that cannot be stored as JSON (also a TypeError)
    ├── ArgumentMismatchError       the key exists for other arguments or another job
    ├── KeyLockedError              a live run holds the key
    ├── LockLostError               this owner's lock was taken over; its step was not committed
    ├── UnknownRecoveryPointError   the stored recovery point is not a step of the job
    ├── DefinitionMismatchError     the stored step list is incompatible with the code's
    ├── NotInStepError              a step-only attribute used outside a step (also a RuntimeError)
    ├── SchemaVersionError          the database schema is missing, older or newer than this code
    ├── RunCancelledError           the run was cancelled (by app.cancel)
    ├── RunFailedError              app.wait: the run failed; carries its stored error
    ├── RunStateError               an action the run's status refuses (retry of a running run)
    ├── acidic.http.MissingKeyError an endpoint requires an Idempotency-Key and none was sent
    ├── Retry                       a step raises it to be run again later
    └── StorageError                the database failed in a way acidic could not recover from
        ├── ContentionError         a race kept failing after the bounded number of retries
        └── CorruptRunError         a stored run acidic cannot read (edited outside acidic)
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._run import RunError

__all__ = [
    "AcidicError",
    "ArgumentMismatchError",
    "ContentionError",
    "CorruptRunError",
    "DefinitionMismatchError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "JobDefinitionError",
    "KeyLockedError",
    "LockLostError",
    "NotInStepError",
    "Retry",
    "RunCancelledError",
    "RunFailedError",
    "RunStateError",
    "SchemaVersionError",
    "SerializationError",
    "StorageError",
    "UnknownJobError",
    "UnknownKeyError",
    "UnknownRecoveryPointError",
]


class AcidicError(Exception):
    """Root of every error acidic raises on its own account."""


class JobDefinitionError(AcidicError, TypeError):
    """A job class is malformed: no steps, duplicate step names, a bad step signature,
    a reserved or unsupported field. Raised when the class is defined."""


class UnknownJobError(AcidicError, LookupError):
    """A job class or a stored job name is not registered with this :class:`acidic.App`."""


class UnknownKeyError(AcidicError, LookupError):
    """No run is stored under the idempotency key given to resume, signal, retry or cancel."""


class InvalidKeyError(AcidicError, ValueError):
    """An idempotency key is empty, too long or not a string."""


class InvalidArgumentError(AcidicError, ValueError, TypeError):
    """An argument given to acidic has the wrong type or value: a negative lock timeout,
    an undeclared queue, a naive ``run_at``. Also a ``ValueError`` and a ``TypeError``, so
    that code catching the built-in errors for bad arguments catches it too."""


class SerializationError(AcidicError, TypeError):
    """An argument, a context value or a result cannot be stored as JSON.

    Also raised for an argument whose type does not match its field's annotation.
    """


class ArgumentMismatchError(AcidicError):
    """The idempotency key already exists for other arguments or another job."""


class KeyLockedError(AcidicError):
    """Another live run holds the key's lock; try again later."""


class LockLostError(AcidicError):
    """This run's lock went stale and was taken over by another owner.

    The step that was about to commit was rolled back (fencing); the new owner
    continues the run from its recovery point.
    """


class UnknownRecoveryPointError(AcidicError):
    """The recovery point (stored, or returned by a step) is not a step of the job."""


class DefinitionMismatchError(AcidicError):
    """The step list stored with a run is incompatible with the job's current steps.

    Compatible means the current step list starts with the stored one: steps may be
    appended at the end, never removed, renamed or reordered while runs are unfinished.
    """


class NotInStepError(AcidicError, RuntimeError):
    """``key``, ``ctx``, ``attempt`` ... were used on a job instance that is not running."""


class SchemaVersionError(AcidicError):
    """acidic's tables are missing, older than this code (run ``app.migrate()``),
    or newer than this code (upgrade acidic)."""


class RunCancelledError(AcidicError):
    """The run was cancelled with :meth:`acidic.App.cancel`; it will not run again."""


class RunFailedError(AcidicError):
    """:meth:`acidic.App.wait` found the run failed. ``error`` is its stored
    :class:`acidic.RunError` (type, message, traceback, step), ``key`` its key."""

    def __init__(self, key: str, error: RunError | None) -> None:
        where = f" in step {error.step!r}" if error is not None and error.step else ""
        what = f": {error.type}: {error.message}" if error is not None else ""
        super().__init__(f"run {key!r} failed{where}{what}")
        self.key = key
        self.error = error


class RunStateError(AcidicError):
    """An action was refused because of the run's status: retrying a running run,
    resuming a succeeded one. The message names the key, the status the run has and the
    statuses the action accepts."""

    def __init__(self, key: str, action: str, status: str, accepted: tuple[str, ...]) -> None:
        super().__init__(
            f"cannot {action} key {key!r}: it is {status}; {action} accepts a run that is "
            + " or ".join(accepted)
        )
        self.key = key
        self.action = action
        self.status = status
        self.accepted = accepted


class Retry(AcidicError):
    """Raise from a step to run it again later: after ``after`` (seconds or a
    ``timedelta``), else after the job's backoff.

    It counts as an attempt: once the job's ``max_attempts`` are used, the run fails.
    """

    def __init__(self, after: float | dt.timedelta | None = None, message: str = "") -> None:
        super().__init__(message or "retry requested by the step")
        if after is not None:
            if isinstance(after, dt.timedelta):
                after = after.total_seconds()
            if isinstance(after, bool) or not isinstance(after, int | float) or after < 0:
                raise ValueError(
                    f"Retry(after=...) takes seconds >= 0 or a timedelta, not {after!r}"
                )
        self.after: float | None = None if after is None else float(after)


class StorageError(AcidicError):
    """The database failed while acidic was reading or writing its own tables."""


class ContentionError(StorageError):
    """A race on a key (serialization failure, deadlock, unique violation) kept
    failing after acidic's bounded retries."""


class CorruptRunError(StorageError):
    """A stored run has a field acidic cannot read: an unknown status, arguments or
    context that are not the JSON acidic wrote, a malformed step list. Such a run was
    changed outside acidic; the message names the key and the fields. A worker fails
    such a run (if its status lets it claim the run) and goes on."""
