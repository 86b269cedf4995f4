"""The ride job: three steps, each one transaction with the ORM writes it makes.
(Imported at start-up by acidic.django, as the admin imports admin.py.)"""

import acidic
from acidic.django import app, step

from .models import Charge, Ride
from .tasks import send_receipt


@app.job(name="rides.complete")
class CompleteRide(acidic.Job):
    ride_id: int

    @step
    def assign_driver(self):
        Ride.objects.filter(pk=self.ride_id).update(status="assigned", driver="Dana")

    @step
    def charge(self):
        # Runs once: a crash before this commits leaves no charge and runs it again;
        # a crash after it leaves the charge and never runs it again.
        Charge.objects.create(ride_id=self.ride_id, amount_cents=1250)
        Ride.objects.filter(pk=self.ride_id).update(fare_cents=1250)

    @step
    def finish(self):
        Ride.objects.filter(pk=self.ride_id).update(status="done")
        send_receipt.enqueue(self.ride_id)  # a Django task, enqueued with this commit
        return acidic.Response({"ride": self.ride_id, "status": "done"})
