"""Storage: every SQL statement acidic sends, its tables, migrations and dialect hooks.

The engine talks to it through :class:`Store` and the records of :mod:`._rows`; nothing
above this package writes SQL or names a column.
"""

from ._limited_claims import QueueLimits
from ._rendered import in_autocommit
from ._rows import KEEP, EventRow, Fence, Keep, NewRun, RunChange, RunRow
from ._step_connection import mark_step
from ._store import Store

__all__ = [
    "KEEP",
    "EventRow",
    "Fence",
    "Keep",
    "NewRun",
    "QueueLimits",
    "RunChange",
    "RunRow",
    "Store",
    "in_autocommit",
    "mark_step",
]
