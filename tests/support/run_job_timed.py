"""Run one job in a child process, started on a signal from the parent:
``python -m tests.support.run_job_timed URL JOB KEY ARGS_JSON [LOCK_TIMEOUT]``.

The child imports, builds its App and opens one pooled connection, and one of its
asyncio engine (so the drivers' and the dialects' one-off start-up is done; acidic
itself has not looked at the database yet: its schema check happens in ``app.run``),
prints ``{"ready": true}``, then waits for a line on its stdin. The parent sends that
line to all its children at once, so they call ``app.run`` together instead of
staggered by their ~1 s start-up. The child then prints one JSON line like
``tests.support.run_job``'s, plus ``elapsed``: the seconds ``app.run`` took (the App's
first look at the database included), measured here, so it excludes the start-up.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from tests.support.jobs import JOBS, make_app


def main() -> None:
    url, job_name, key, args_json = sys.argv[1:5]
    options = {"lock_timeout": float(sys.argv[5])} if len(sys.argv) > 5 else {}
    app = make_app(url, **options)
    job = JOBS[job_name](**json.loads(args_json))
    try:
        with app.engine.connect():
            pass
        # The asyncio engine's too (async flavours: app.run of an async job uses it).
        asyncio.run(app.get_async(key))
        print(json.dumps({"ready": True}), flush=True)
        sys.stdin.readline()
        start = time.monotonic()
        out: dict[str, Any]
        try:
            out = {"result": app.run(job, key=key)}
        except Exception as exc:
            out = {"error": type(exc).__name__, "message": str(exc)}
        out["elapsed"] = time.monotonic() - start
        print(json.dumps(out), flush=True)
    finally:
        app.close()


if __name__ == "__main__":
    main()
