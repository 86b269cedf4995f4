"""Run one job in a child process:
``python -m tests.support.run_job URL JOB KEY ARGS_JSON [LOCK_TIMEOUT]``.

Prints one JSON line on stdout: ``{"result": ...}`` on success or halt, or
``{"error": "<exception class name>", "message": ...}``; exits 0 either way, so the
parent can tell a refused call from a killed process (which prints nothing).
"""

from __future__ import annotations

import json
import sys

from tests.support.jobs import JOBS, make_app


def main() -> None:
    url, job_name, key, args_json = sys.argv[1:5]
    options = {"lock_timeout": float(sys.argv[5])} if len(sys.argv) > 5 else {}
    app = make_app(url, **options)
    job = JOBS[job_name](**json.loads(args_json))
    try:
        result = app.run(job, key=key)
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
    else:
        print(json.dumps({"result": result}), flush=True)
    finally:
        app.close()


if __name__ == "__main__":
    main()
