from django.db import models


class Ride(models.Model):
    rider = models.CharField(max_length=100)
    origin = models.CharField(max_length=100)
    destination = models.CharField(max_length=100)
    status = models.CharField(max_length=20, default="requested")
    driver = models.CharField(max_length=100, blank=True)
    fare_cents = models.IntegerField(default=0)


class Charge(models.Model):
    ride = models.OneToOneField(Ride, on_delete=models.CASCADE)
    amount_cents = models.IntegerField()
