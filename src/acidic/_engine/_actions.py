"""What an operator may do to a run, and from which statuses: defined once here, used by
the App (which refuses with :class:`acidic.RunStateError`), the CLI and the dashboard
(which only use it to offer the actions that apply)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .._run import RunStatus

__all__ = ["ACTIONS", "CANCEL_AT_ONCE", "CONTINUE_INTERRUPTED", "accepted"]

_P, _R, _H, _S, _F, _A, _I = (
    RunStatus.PENDING,
    RunStatus.RUNNING,
    RunStatus.HALTED,
    RunStatus.SCHEDULED,
    RunStatus.FAILED,
    RunStatus.AWAITING,
    RunStatus.INTERRUPTED,
)

#: Action name -> the statuses from which it applies.
#: ``resume`` of an awaiting run continues it without waiting for the rest of what it
#: awaits. ``resume_from`` is ``app.resume(key, from_step=...)``; ``cancel`` of a running run
#: takes effect at its next step boundary; ``signal`` is stored whatever the status and
#: wakes only a halted run.
ACTIONS: Mapping[str, frozenset[RunStatus]] = MappingProxyType(
    {
        "retry": frozenset({_F}),
        "resume": frozenset({_H, _S, _A}),
        "resume_from": frozenset({_H, _S, _F, _A}),
        "cancel": frozenset({_P, _S, _H, _F, _R, _A}),
    }
)

#: Actions that also continue an ``interrupted`` run (Ctrl-C in an inline step). It is
#: not in their table above: bulk actions over a selection and the refusal messages stay
#: about the statuses operators act on; an interrupted run is acted on by its key.
CONTINUE_INTERRUPTED: frozenset[str] = frozenset({"retry", "resume", "resume_from"})

#: The statuses a cancel ends at once (a running run ends at its next step boundary).
CANCEL_AT_ONCE: frozenset[RunStatus] = frozenset({_P, _S, _H, _F, _A, _I})


def accepted(action: str) -> tuple[str, ...]:
    """The statuses ``action`` accepts, as sorted names (for messages)."""
    order = list(RunStatus)
    return tuple(s.value for s in sorted(ACTIONS[action], key=order.index))
