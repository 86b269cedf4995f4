"""The engine: runs, steps, locks and recovery, on the storage port; no SQL, no dialect."""

from .._storage import RunRow
from ._manager import Finished, Manager, check_same_call, utcnow
from ._observe import NO_OBSERVER, Observer, current_executor
from ._runner import current_step
from ._transitions import Ended

__all__ = [
    "NO_OBSERVER",
    "Ended",
    "Finished",
    "Manager",
    "Observer",
    "RunRow",
    "check_same_call",
    "current_executor",
    "current_step",
    "utcnow",
]
