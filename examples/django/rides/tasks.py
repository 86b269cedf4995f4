"""A Django task (TASKS' backend: acidic.django.tasks.AcidicBackend)."""

from django.tasks import task

from .models import Ride


@task
def send_receipt(ride_id: int) -> str:
    ride = Ride.objects.get(pk=ride_id)
    return f"receipt for ride {ride.pk}: {ride.fare_cents / 100:.2f} EUR, driver {ride.driver}"
