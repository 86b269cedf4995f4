import json

from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from acidic.django import app

from .jobs import CompleteRide
from .models import Ride


@csrf_exempt
def book(request):
    """POST /rides/ with ``Idempotency-Key``: books a ride once, however often the
    client retries; the ride's job is enqueued in the same transaction."""
    data = json.loads(request.body or b"{}")
    with transaction.atomic():
        ride = Ride.objects.create(
            rider=data.get("rider", "ann"),
            origin=data.get("from", "station"),
            destination=data.get("to", "airport"),
        )
        app.enqueue(CompleteRide(ride_id=ride.pk))
    return JsonResponse({"ride": ride.pk, "status": ride.status}, status=201)


def show(request, ride_id):
    ride = Ride.objects.get(pk=ride_id)
    return JsonResponse({"ride": ride.pk, "status": ride.status, "fare_cents": ride.fare_cents})
