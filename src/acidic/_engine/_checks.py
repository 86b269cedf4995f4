"""Checks of a stored run against the call and the code that claim it."""

from __future__ import annotations

import json
from typing import Any

from .._errors import (
    ArgumentMismatchError,
    DefinitionMismatchError,
    KeyLockedError,
    UnknownRecoveryPointError,
)
from .._job import Job, JobDefinition
from .._storage import RunRow

__all__ = ["check_definition", "check_same_call", "concurrency_of", "locked"]


def locked(row: RunRow) -> KeyLockedError:
    """The refusal of a key whose run a live owner holds."""
    expiry = row.lock_expires_at.isoformat() if row.lock_expires_at else "soon"
    return KeyLockedError(
        f"key {row.key!r} (job {row.job}) is held by a live run at step "
        f"{row.recovery_point!r}; unless its owner renews the lock, it becomes claimable "
        f"at {expiry}"
    )


def check_same_call(row: RunRow, name: str, encoded_args: dict[str, Any] | None) -> None:
    """Refuse a key used for another job, or (``encoded_args`` given) other arguments."""
    if row.job != name:
        raise ArgumentMismatchError(
            f"key {row.key!r} belongs to job {row.job}, not {name}; use another key"
        )
    if encoded_args is None:
        return
    stored = json.loads(row.args)
    if stored != encoded_args:
        fields = sorted(set(stored) | set(encoded_args))
        diffs = [
            f"{f}: stored {stored.get(f, '<absent>')!r}, given {encoded_args.get(f, '<absent>')!r}"
            for f in fields
            if stored.get(f, ...) != encoded_args.get(f, ...)
        ]
        raise ArgumentMismatchError(
            f"key {row.key!r} (job {name}) was first used with other arguments: " + "; ".join(diffs)
        )


def check_definition(row: RunRow, job: str, definition: JobDefinition) -> None:
    """Refuse to execute a run whose stored recovery point or step list the job's code
    no longer has."""
    names = definition.step_names
    if row.recovery_point not in definition.steps_by_name:
        raise UnknownRecoveryPointError(
            f"key {row.key!r}: the stored recovery point {row.recovery_point!r} is not a step "
            f"of job {job}, whose steps are {names}"
        )
    stored = json.loads(row.steps)
    if names[: len(stored)] != stored:
        raise DefinitionMismatchError(
            f"key {row.key!r}: job {job} was started with steps {stored}, but its steps are now "
            f"{names}; steps may only be appended at the end while runs are unfinished"
        )


def concurrency_of(job: Job) -> dict[str, Any]:
    """The ``concurrency_key`` and ``concurrency_limit`` of a new run of ``job`` (None
    for a job without an :class:`acidic.Limit`)."""
    limit = type(job).concurrency
    if limit is None:
        return {"concurrency_key": None, "concurrency_limit": None}
    return {"concurrency_key": limit.key_of(job), "concurrency_limit": limit.max}
