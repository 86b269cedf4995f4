"""Child runs: what ``self.spawn`` and ``self.children`` do inside a step.

A child is an enqueued run that records its parent. In a transactional step it is
inserted on the step's connection, so it exists only if the step commits; its default
key is derived from the parent's key, so a step that runs again finds the child it
created instead of creating a second one.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import sqlalchemy as sa

from .._encoding import MAX_KEY_LENGTH, canonical_json
from .._errors import UnknownJobError, UnknownKeyError
from .._job import Job, StepSpec
from .._run import Run
from .._storage import RunRow
from ._views import to_run

if TYPE_CHECKING:
    from ._manager import Manager

__all__ = ["child_key", "children", "refuse_missing", "spawn"]


def child_key(parent_key: str, job: str, encoded_args: dict[str, object]) -> str:
    """The default key of a child: the parent's key, the child's job and a digest of its
    arguments (the whole key hashed when that would be too long)."""
    digest = hashlib.sha256(canonical_json(encoded_args).encode()).hexdigest()[:16]
    key = f"{parent_key}/{job}-{digest}"
    if len(key) > MAX_KEY_LENGTH:
        key = "child-" + hashlib.sha256(key.encode()).hexdigest()
    return key


def spawn(
    manager: Manager,
    parent: RunRow,
    conn: sa.Connection | None,
    child: Job,
    key: str | None,
    *,
    queue: str | None,
    priority: int,
) -> str:
    """Enqueue ``child`` as a child of ``parent`` (on ``conn``, the step's transaction,
    when given); its key."""
    if not isinstance(child, Job):
        raise UnknownJobError(f"spawn() takes a job instance, not {child!r}")
    name = next((n for n, c in manager.jobs.items() if c is type(child)), None)
    if name is None:
        raise UnknownJobError(
            f"spawn(): job {type(child).__qualname__} is not registered with this App"
        )
    if key is None:
        encoded = type(child).__acidic_definition__.encode_args(child)
        key = child_key(parent.key, name, encoded)
    row = manager.enqueue(
        name,
        child,
        key,
        run_at=None,
        queue=queue or parent.queue or manager.default_queue,
        priority=priority,
        connection=conn,
        parent_id=parent.id,
    )
    return row.key


def children(manager: Manager, run_id: int, conn: sa.Connection | None) -> list[Run]:
    """The runs that run ``run_id`` spawned, oldest first (read in the step's
    transaction ``conn`` when given)."""
    rows = manager.children(run_id, conn)
    return [to_run(row, [], manager.jobs.get(row.job)) for row in rows]


def refuse_missing(spec: StepSpec, missing: list[str]) -> None:
    """Fail a step whose ``Await`` names keys that have no run."""
    if missing:
        raise UnknownKeyError(
            f"step {spec.name} returned Await of keys that have no run: {missing}"
        )
