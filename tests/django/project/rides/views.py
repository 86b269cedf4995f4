from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse

from acidic.django import app

from .jobs import BookRide
from .models import Booking


def enqueue(request: HttpRequest, rider: str) -> HttpResponse:
    """Enqueue in the view's transaction; ``?fail=1`` raises after the enqueue."""
    with transaction.atomic():
        run = app.enqueue(BookRide(rider=rider), key=f"ride:{rider}")
        if request.GET.get("fail"):
            raise RuntimeError("the view failed after enqueueing")
    return JsonResponse({"key": run.key})


def book(request: HttpRequest) -> HttpResponse:
    booking = Booking.objects.create(seat=request.POST.get("seat", "?"))
    return JsonResponse({"booking": booking.pk}, status=201)


async def abook(request: HttpRequest) -> HttpResponse:
    booking = await Booking.objects.acreate(seat=request.POST.get("seat", "?"))
    return JsonResponse({"booking": booking.pk}, status=201)
