from __future__ import annotations

from typing import ClassVar

from django.db import models


class Ride(models.Model):
    """A row a step writes through the ORM; (rider, stage) is unique so that a step
    that ran twice would fail instead of writing twice."""

    rider = models.CharField(max_length=100)
    stage = models.CharField(max_length=100)
    charged = models.BooleanField(default=False)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["rider", "stage"], name="ride_stage_once"),
        ]


class Booking(models.Model):
    """What the idempotent booking view creates."""

    seat = models.CharField(max_length=100)
