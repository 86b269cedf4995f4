"""Bulk actions: retry, resume or cancel every run a filter selects, in bounded batches.

A bulk action is confirmed for a count and the highest id among the runs selected then
(:meth:`BulkAction.plan`): runs stored later are left alone. It then goes through the
selected runs in id order, ``batch`` keys read per query, each run acted on through
:func:`acidic._admin.perform`, the single action, in its own short transaction: a run
whose status changed since it was selected is refused by the App
(:class:`acidic.RunStateError`) and reported as skipped, never half done. A step
(:meth:`BulkAction.step`) stops after a time budget and returns where it stopped, so a
caller (the dashboard, one HTTP request per step) can show progress and carry on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._app import App
from .._engine._actions import accepted
from .._errors import InvalidArgumentError, RunStateError, UnknownKeyError
from ._acting import OPERATIONS, perform
from ._filters import RunFilter, check_int
from ._reader import Admin

__all__ = ["BATCH", "BulkAction", "BulkPlan", "BulkStep", "Skipped"]

#: Keys read per query by a bulk action.
BATCH = 100


@dataclass(frozen=True, slots=True)
class BulkPlan:
    """What a bulk action will act on: ``count`` runs, ids up to ``upto``."""

    action: str
    #: The filter narrowed to the statuses the action applies to (None: none can).
    selection: RunFilter | None
    count: int
    upto: int

    def describe(self) -> str:
        """The selection in words."""
        return "no runs" if self.selection is None else self.selection.describe()


@dataclass(frozen=True, slots=True)
class Skipped:
    """A selected run left as it was, and why (the App's refusal)."""

    key: str
    reason: str


@dataclass(slots=True)
class BulkStep:
    """What one step of a bulk action did, and where the next one starts."""

    done: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    #: The last id looked at: the next step starts after it.
    after: int = 0
    finished: bool = False

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            "done": self.done,
            "skipped": [{"key": s.key, "reason": s.reason} for s in self.skipped],
            "after": self.after,
            "finished": self.finished,
        }


class BulkAction:
    """One of :data:`OPERATIONS` applied to the runs a :class:`RunFilter` selects."""

    def __init__(self, app: App, action: str, flt: RunFilter, *, batch: int = BATCH) -> None:
        if action not in OPERATIONS:
            raise InvalidArgumentError(
                f"unknown action {action!r}; the actions are {', '.join(OPERATIONS)}"
            )
        self.app = app
        self.action = action
        self.batch = check_int("batch", batch, 1, 10_000)
        self.selection = flt.narrowed(accepted(action))
        self.admin = Admin(app)

    def plan(self) -> BulkPlan:
        """How many runs the action would act on now, and the last id among them."""
        if self.selection is None:
            return BulkPlan(self.action, None, 0, 0)
        scope = self.admin.scope(self.selection)
        count, upto = self.app.manager.queries.bounds(self.selection, scope)
        return BulkPlan(self.action, self.selection, count, upto)

    def step(
        self,
        *,
        after: int,
        upto: int,
        budget: float = 2.0,
        on_run: Callable[[str, RunStateError | UnknownKeyError | None], None] | None = None,
    ) -> BulkStep:
        """Act on the selected runs with ``after < id <= upto``, batch by batch, until
        none is left (``finished``) or ``budget`` seconds have passed (checked before
        each run, so a step stays near its budget however slow the database is).

        ``on_run(key, refusal)`` is called after each run: ``refusal`` is the App's
        exception when it left the run as it was, else None (the CLI's progress bar and
        its report of the keys)."""
        check_int("after", after, 0, 2**63 - 1)
        check_int("upto", upto, 0, 2**63 - 1)
        result = BulkStep(after=after)
        if self.selection is None:
            result.finished = True
            return result
        deadline = time.monotonic() + budget
        queries = self.app.manager.queries
        # The fleet filters (orphaned, no live worker knows the job) as of this step.
        scope = self.admin.scope(self.selection)
        while True:
            rows = queries.batch(
                self.selection, after_id=result.after, upto_id=upto, limit=self.batch, scope=scope
            )
            for run_id, key in rows:
                if time.monotonic() >= deadline and (result.done or result.skipped):
                    return result  # the budget is spent: the next step starts here
                refused: RunStateError | UnknownKeyError | None = None
                try:
                    perform(self.app, self.action, key)
                except (RunStateError, UnknownKeyError) as exc:
                    # Changed (or pruned) since it was selected: the App refused it.
                    result.skipped.append(Skipped(key, str(exc)))
                    refused = exc
                else:
                    result.done += 1
                result.after = run_id
                if on_run is not None:
                    on_run(key, refused)
            if len(rows) < self.batch:
                result.finished = True
                return result
