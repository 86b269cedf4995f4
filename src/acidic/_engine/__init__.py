"""The engine: runs, steps, locks and recovery, on the storage port; no SQL, no dialect."""

from ._manager import Ended, Finished, Manager, check_same_call, current_step, utcnow

__all__ = ["Ended", "Finished", "Manager", "check_same_call", "current_step", "utcnow"]
