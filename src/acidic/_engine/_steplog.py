"""The log line of each step transition (logger ``acidic.run``), with its fields as
attributes of the record for structured handlers."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from .._job import StepState
from ._transitions import Ended

__all__ = ["log_step"]

log = logging.getLogger("acidic.run")


def log_step(
    state: StepState,
    job: str,
    step: str,
    started: dt.datetime,
    clock: Callable[[], dt.datetime],
    ended: Ended | None,
    outcome: str | None = None,
) -> None:
    """One line for step ``step`` of a run of ``job`` that began at ``started``: it went
    on (``ended`` None), ended as ``ended`` says, or as ``outcome`` says."""
    if not log.isEnabledFor(logging.INFO):
        return
    if outcome is None:
        outcome = "succeeded" if ended is None else ended.status.value
    fields = {
        "key": state.key,
        "job": job,
        "step": step,
        "attempt": state.attempt,
        "duration_ms": round((clock() - started).total_seconds() * 1000, 1),
        "outcome": outcome,
    }
    # Each field is also an attribute of the record (JSON log formatters print them).
    log.info(" ".join(f"{k}={v}" for k, v in fields.items()), extra={**fields, "acidic": fields})
