"""The Django Tasks backend acidic.django.tasks.AcidicBackend, with a real worker
process (``manage.py acidic worker``)."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from .conftest import Project

pytestmark = pytest.mark.slow

ENQUEUE = """
import datetime as dt, json
from django.db import transaction
from tests.django.project.rides import tasks
ids = {}
r = tasks.add.enqueue(2, 3)
assert r.status == "READY" and r.args == [2, 3], r
ids["add"] = r.id
ids["row"] = tasks.ride_row.enqueue("tia").id
ids["boom"] = tasks.boom.enqueue("no luck").id
ids["ctx"] = tasks.attempt.enqueue().id
ids["async"] = tasks.aadd.enqueue(4, 5).id
later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
ids["later"] = tasks.add.using(run_after=later).enqueue(1, 1).id
try:
    with transaction.atomic():
        ids["rolled_back"] = tasks.add.enqueue(7, 7).id
        raise RuntimeError
except RuntimeError:
    pass
print(json.dumps(ids))
"""

WAIT = """
import json, time
from django.tasks import default_task_backend as backend
ids = json.loads({ids!r})
deadline = time.monotonic() + 60
while True:
    results = {{n: backend.get_result(i) for n, i in ids.items() if n in {names!r}}}
    if all(r.is_finished for r in results.values()) or time.monotonic() > deadline:
        break
    time.sleep(0.2)
out = {{}}
for name, r in results.items():
    out[name] = {{
        "status": r.status,
        "value": r.return_value if r.status == "SUCCESSFUL" else None,
        "errors": [e.exception_class_path for e in r.errors],
        "tb": [e.traceback.splitlines()[-1] for e in r.errors],
        "attempts": r.attempts,
        "started": r.started_at is not None,
        "finished": r.finished_at is not None,
    }}
print(json.dumps(out))
"""


def stop(worker: subprocess.Popen[str]) -> str:
    """Stop the worker as a service manager does; its stderr."""
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    return err


def test_tasks__enqueue_execute_and_read_results(project: Project) -> None:
    ids = json.loads(project.shell(ENQUEUE))
    worker = project.start("acidic", "worker", "--poll-interval", "0.2")
    try:
        names = ["add", "row", "boom", "ctx", "async"]
        out = json.loads(project.shell(WAIT.format(ids=json.dumps(ids), names=names)))
    finally:
        stop(worker)
    assert out["add"]["status"] == "SUCCESSFUL"
    assert out["add"]["value"] == 5
    assert out["add"]["started"]
    assert out["add"]["finished"]
    assert out["add"]["attempts"] == 1
    assert out["async"]["value"] == 9
    assert out["row"]["status"] == "SUCCESSFUL"
    assert isinstance(out["row"]["value"], int)
    assert out["ctx"]["value"] == {"id": ids["ctx"], "attempt": 1}
    # No retry of its own: FAILED at once, the error stored.
    assert out["boom"]["status"] == "FAILED"
    assert out["boom"]["attempts"] == 1
    assert out["boom"]["errors"] == ["builtins.ValueError"]
    assert out["boom"]["tb"] == ["ValueError: no luck"]
    rest = project.shell(
        "from django.tasks import default_task_backend as b\n"
        "from django.tasks.exceptions import TaskResultDoesNotExist\n"
        f"r = b.get_result({ids['later']!r}); print(r.status)\n"
        "try:\n"
        f"    b.get_result({ids['rolled_back']!r})\n"
        "except TaskResultDoesNotExist:\n"
        "    print('gone')\n"
    )
    assert rest.split() == ["READY", "gone"]  # not due yet; never committed


def test_tasks__a_killed_worker_is_taken_over(project: Project) -> None:
    """The worker dies inside the task (SIGKILL); a second worker takes the task over
    once its lock is stale and finishes it (attempt 2)."""
    ids = json.loads(
        project.shell(
            "import json\nfrom tests.django.project.rides import tasks\n"
            "print(json.dumps({'ctx': tasks.attempt.enqueue(crash=True).id}))"
        )
    )
    first = project.start("acidic", "worker", "--poll-interval", "0.2", ACIDIC_TEST_LOCK="2")
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    second = project.start("acidic", "worker", "--poll-interval", "0.2")
    try:
        out = json.loads(project.shell(WAIT.format(ids=json.dumps(ids), names=["ctx"])))
    finally:
        stop(second)
    assert out["ctx"]["status"] == "SUCCESSFUL"
    assert out["ctx"]["value"] == {"id": ids["ctx"], "attempt": 2}
