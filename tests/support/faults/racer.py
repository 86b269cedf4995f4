"""Start N real processes that race on one key, released at the same instant:
``python -m tests.support.faults.racer URL JOB KEY ARGS_JSON N OUT_DIR [LOCK_TIMEOUT]``.

The launcher imports acidic and the test jobs once, then forks N children (so that 50
processes start in a fraction of a second instead of 50 interpreter start-ups). Each
child builds its own App, opens one connection (the driver's start-up is done) and
says it is ready; then it blocks reading a pipe whose only writer is the launcher.
Once all N are ready, the launcher prints ``{"ready": N}`` and waits for a line on its
stdin; on that line it closes the pipe, and every child sees end-of-file at the same
moment and calls ``app.run``. Each child writes its outcome to ``OUT_DIR/<i>.json``
(``{"result": ...}`` or ``{"error": <class name>, "message": ...}``, plus ``pid``,
``elapsed`` and ``ended``, the wall-clock time ``app.run`` returned or raised). The
launcher prints ``{"done": N}`` once every child has exited.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.jobs import JOBS, make_app


def _child(
    index: int,
    url: str,
    job_name: str,
    key: str,
    args: dict[str, Any],
    out_dir: Path,
    options: dict[str, Any],
    ready_w: int,
    go_r: int,
) -> None:
    app = make_app(url, **options)
    out: dict[str, Any] = {"pid": os.getpid()}
    try:
        job = JOBS[job_name](**args)
        with app.engine.connect():
            pass
        os.write(ready_w, b"r")
        os.read(go_r, 1)  # end-of-file: the launcher closed the pipe, everyone goes
        start = time.monotonic()
        try:
            out["result"] = app.run(job, key=key)
        except Exception as exc:
            out.update(error=type(exc).__name__, message=str(exc))
        out["elapsed"] = time.monotonic() - start
        out["ended"] = time.time()  # comparable with the times the run's history holds
    finally:
        app.close()
        (out_dir / f"{index}.json").write_text(json.dumps(out), encoding="utf-8")


def main() -> None:
    url, job_name, key, args_json, n_s, out_s = sys.argv[1:7]
    options = {"lock_timeout": float(sys.argv[7])} if len(sys.argv) > 7 else {}
    n, out_dir, args = int(n_s), Path(out_s), json.loads(args_json)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    for index in range(n):
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                os.close(ready_r)
                os.close(go_w)
                _child(index, url, job_name, key, args, out_dir, options, ready_w, go_r)
            except BaseException:
                code = 1
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(ready_w)
    os.close(go_r)
    ready = 0
    while ready < n:
        got = os.read(ready_r, n - ready)
        if not got:  # every child exited before being ready
            break
        ready += len(got)
    print(json.dumps({"ready": ready}), flush=True)
    sys.stdin.readline()
    os.close(go_w)  # the barrier: all children read end-of-file now
    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    print(json.dumps({"done": n, "failed": failed}), flush=True)


if __name__ == "__main__":
    main()
