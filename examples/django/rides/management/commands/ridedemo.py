"""``manage.py ridedemo``: book a ride twice with one Idempotency-Key, let a worker
complete it (the three-step job, then the receipt task), and print what happened."""

import json
import signal
import subprocess
import sys
import time
import uuid

from django.core.management.base import BaseCommand
from django.tasks import default_task_backend
from django.test import Client

from acidic.django import app
from acidic.django.models import Run
from rides.models import Charge, Ride


class Command(BaseCommand):
    help = "Book a ride through the idempotent view and let a worker complete it."

    def handle(self, *args, **options):
        client = Client()
        key = uuid.uuid4().hex
        body = json.dumps({"rider": "ann", "from": "station", "to": "airport"})
        first = client.post("/rides/", body, "application/json", headers={"Idempotency-Key": key})
        again = client.post("/rides/", body, "application/json", headers={"Idempotency-Key": key})
        ride_id = first.json()["ride"]
        self.stdout.write(f"POST /rides/ -> {first.status_code} {first.json()}")
        replayed = again.headers.get("Idempotent-Replayed")
        self.stdout.write(f"POST /rides/ again -> {again.status_code} (replayed: {replayed})")
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "acidic", "worker", "--poll-interval", "0.2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            receipt = None
            while time.monotonic() < deadline:
                ride = Ride.objects.get(pk=ride_id)
                done = [default_task_backend.get_result(r.key) for r in _task_runs()]
                if ride.status == "done" and done and all(r.is_finished for r in done):
                    receipt = done[0].return_value
                    break
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        ride = Ride.objects.get(pk=ride_id)
        self.stdout.write(
            f"ride {ride.pk}: {ride.status}, driver {ride.driver}, "
            f"charges {Charge.objects.filter(ride=ride).count()}"
        )
        self.stdout.write(f"task: {receipt}")
        booked = Ride.objects.filter(pk__gte=ride_id).count()
        self.stdout.write(f"rides booked by the two POSTs: {booked}")
        self.stdout.write(f"the job's run: {app.get(_job_key()).status.value}")


def _job_key():
    return Run.objects.filter(job="rides.complete").order_by("-id").first().key


def _task_runs():
    return Run.objects.filter(job="acidic.django.task").order_by("-id")[:1]
