"""Assertions about runs, for tests."""

from __future__ import annotations

from collections import Counter

from .._run import Run, RunStatus

__all__ = ["assert_each_step_succeeded_once"]


def assert_each_step_succeeded_once(run: Run | None) -> None:
    """Assert that ``run`` succeeded and that its history shows each of its steps
    succeeding exactly once (raises ``AssertionError`` showing the history if not).

    Together with counts of a job's own rows, this is the check of exactly-once
    progress after crashes: a step whose success was recorded twice was executed
    twice to its end.
    """
    if run is None:
        raise AssertionError("no run: the key's run does not exist")
    succeeded = Counter(e.step for e in run.history if e.event == "succeeded")
    wrong = {step: succeeded[step] for step in run.steps if succeeded[step] != 1}
    if run.status is RunStatus.SUCCEEDED and not wrong:
        return
    history = "\n".join(
        f"  {e.time.isoformat()} attempt {e.attempt}: {e.step} {e.event}"
        + (f" ({e.error.type}: {e.error.message})" if e.error else "")
        for e in run.history
    )
    problems = []
    if run.status is not RunStatus.SUCCEEDED:
        problems.append(f"it is {run.status.value}, not succeeded")
    if wrong:
        problems.append(
            "steps not succeeded exactly once: "
            + ", ".join(f"{step} ({n} times)" for step, n in wrong.items())
        )
    raise AssertionError(f"run {run.key!r}: " + "; ".join(problems) + f"\nhistory:\n{history}")
