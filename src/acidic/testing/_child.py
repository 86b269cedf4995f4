"""The child process of ``crash_points(mode="kill")``: runs one key until killed.

Reads a JSON payload on stdin (see ``_crash._crash_in_child``), builds the App with
the test's factory, and runs the job with the crash point armed to SIGKILL itself.
"""

from __future__ import annotations

import json
import sys

from .._app import App
from .._errors import AcidicError
from .._imports import import_target
from ._crash import _Injector, _kill


def load_app(factory: str, url: str) -> App:
    """The App built by ``factory`` (``"module:attribute"``) for the database ``url``."""
    target = import_target(factory, "app_factory")
    if not callable(target) or isinstance(target, App):
        raise AcidicError(
            f"app_factory {factory!r} must be a callable taking the database URL, not {target!r}"
        )
    app = target(url)
    if not isinstance(app, App):
        raise AcidicError(f"app_factory {factory!r} returned {app!r}, not an acidic.App")
    return app


def main() -> None:
    payload = json.load(sys.stdin)
    app = load_app(payload["app_factory"], payload["url"])
    job_cls = app.jobs[payload["job"]]
    job = job_cls.__acidic_definition__.instantiate(payload["args"])
    with _Injector(app.engine, payload["crash_at"], _kill):
        app.run(job, key=payload["key"])


if __name__ == "__main__":
    main()
