"""Operator actions (retry, resume, cancel) as the CLI and the dashboard perform them.

Each goes straight to the App, whose status check and change are one statement: a
status that refuses the action raises :class:`acidic.RunStateError`, however late it
changed. The statuses in :data:`acidic._engine._actions.ACTIONS` only choose which runs
a bulk action selects and which buttons a page shows.
"""

from __future__ import annotations

from .._app import App
from .._engine._actions import ACTIONS, accepted
from .._errors import InvalidArgumentError, RunStateError
from .._run import Run, RunStatus

__all__ = ["OPERATIONS", "perform"]

#: The actions an operator can take from the CLI or the dashboard.
OPERATIONS = ("retry", "resume", "cancel")


def perform(app: App, action: str, key: str, *, from_step: str | None = None) -> Run:
    """Do ``action`` (one of :data:`OPERATIONS`) on the run ``key`` through ``app``.

    ``from_step`` (resume only): continue at that step, which a failed run accepts too.
    Raises :class:`acidic.RunStateError` when the run's status refuses the action,
    :class:`acidic.UnknownKeyError` when no run has ``key``, and
    :class:`acidic.UnknownRecoveryPointError` for a step the job does not have.
    """
    if action == "retry":
        return app.retry(key)
    if action == "resume":
        return app.resume(key, from_step=from_step)
    if action != "cancel":
        raise InvalidArgumentError(
            f"unknown action {action!r}; the actions are {', '.join(OPERATIONS)}"
        )
    # app.cancel leaves a finished run as it is without raising (code may cancel whatever
    # the state); an operator who asked to cancel one is told. The status read first only
    # tells "already cancelled" from "cancelled now": it decides nothing the App does.
    before = app.manager.queries.summary(key)
    run = app.cancel(key)
    if run.status not in ACTIONS["cancel"] and not (
        run.status == RunStatus.CANCELLED
        and (before is None or before.status != RunStatus.CANCELLED)
    ):
        raise RunStateError(run.key, "cancel", run.status, accepted("cancel"))
    return run
