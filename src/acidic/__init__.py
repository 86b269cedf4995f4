"""acidic: durable, idempotent, multi-step background jobs on a SQL database.

A job is a list of named steps; every run is identified by an idempotency key whose
row stores the job, its arguments, its recovery point (the next step), its context,
its result or last error, and a lock. Transactional steps commit their writes together
with the move of the recovery point, so a crash, a deploy or a retry resumes where
the run stood and never does a step's database work twice.
"""

from ._app import App
from ._context import Context
from ._errors import (
    AcidicError,
    ArgumentMismatchError,
    ContentionError,
    CorruptRunError,
    DefinitionMismatchError,
    InvalidArgumentError,
    InvalidKeyError,
    JobDefinitionError,
    KeyLockedError,
    LockLostError,
    NotInStepError,
    Retry,
    RunCancelledError,
    RunFailedError,
    RunStateError,
    SchemaVersionError,
    SerializationError,
    StorageError,
    UnknownJobError,
    UnknownKeyError,
    UnknownRecoveryPointError,
)
from ._job import Job, step
from ._limits import Limit, Queue, Rate
from ._outcomes import Await, Halt, RecoveryPoint, Response, Sleep
from ._run import Run, RunError, RunStatus, StepEvent
from ._worker import Worker

__version__ = "0.1.0.dev0"

__all__ = [
    "AcidicError",
    "App",
    "ArgumentMismatchError",
    "Await",
    "ContentionError",
    "Context",
    "CorruptRunError",
    "DefinitionMismatchError",
    "Halt",
    "InvalidArgumentError",
    "InvalidKeyError",
    "Job",
    "JobDefinitionError",
    "KeyLockedError",
    "Limit",
    "LockLostError",
    "NotInStepError",
    "Queue",
    "Rate",
    "RecoveryPoint",
    "Response",
    "Retry",
    "Run",
    "RunCancelledError",
    "RunError",
    "RunFailedError",
    "RunStateError",
    "RunStatus",
    "SchemaVersionError",
    "SerializationError",
    "Sleep",
    "StepEvent",
    "StorageError",
    "UnknownJobError",
    "UnknownKeyError",
    "UnknownRecoveryPointError",
    "Worker",
    "step",
]
