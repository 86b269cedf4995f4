"""Tools for testing jobs: crash them everywhere, move time, drain runs inline.

``crash_points(app, job)`` crashes a run of ``job`` at every point where a crash could
happen and resumes it; ``Clock`` is frozen time to pass as ``App(clock=...)``, moved
with ``advance``; :meth:`acidic.App.drain` executes due runs inline;
``assert_each_step_succeeded_once`` checks a run's history. See docs/testing.md.
"""

from ._checks import assert_each_step_succeeded_once
from ._clock import Clock
from ._crash import CrashedRun, CrashMode, CrashPoint, InjectedCrash, crash_points

__all__ = [
    "Clock",
    "CrashMode",
    "CrashPoint",
    "CrashedRun",
    "InjectedCrash",
    "assert_each_step_succeeded_once",
    "crash_points",
]
