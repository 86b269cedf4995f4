"""What a step may return to say where the run goes next."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Halt", "RecoveryPoint", "Response", "StepOutcome"]


@dataclass(frozen=True, slots=True)
class Response:
    """Finish the run now and store ``value`` (JSON, see :mod:`acidic` encoders) as its result."""

    value: Any = None


@dataclass(frozen=True, slots=True)
class RecoveryPoint:
    """Continue the run at the step named ``step``: a jump forward or a loop back."""

    step: str


@dataclass(frozen=True, slots=True)
class Halt:
    """Stop the run here and release it.

    The step's transactional writes and context commit as usual; the same step runs
    again the next time the key is run (or resumed).
    """


StepOutcome = Response | RecoveryPoint | Halt | None
