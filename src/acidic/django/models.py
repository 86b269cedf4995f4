"""acidic's tables as Django models, for the admin: read-only (``managed = False``;
acidic's migrations own the tables, and acidic writes them)."""

from __future__ import annotations

from typing import ClassVar

from django.db import models

__all__ = ["Event", "Run"]


class Run(models.Model):
    """A run of a job (acidic's ``acidic_runs``)."""

    id = models.BigAutoField(primary_key=True)
    key = models.CharField(max_length=255, unique=True, db_column="idempotency_key")
    job = models.CharField(max_length=255)
    args = models.TextField()
    steps = models.TextField()
    status = models.CharField(max_length=16)
    recovery_point = models.CharField(max_length=255, null=True)
    ctx = models.TextField()
    result = models.TextField(null=True)
    error = models.TextField(null=True)
    attempts = models.IntegerField()
    lock_token = models.CharField(max_length=32, null=True)
    locked_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    queue = models.CharField(max_length=100, null=True)
    priority = models.IntegerField(default=0)
    run_at = models.DateTimeField(null=True)
    lock_expires_at = models.DateTimeField(null=True)
    attempt_limit = models.IntegerField(null=True)
    cancel_requested = models.BooleanField(default=False)

    class Meta:
        managed = False
        db_table = "acidic_runs"
        ordering: ClassVar[list[str]] = ["-id"]
        permissions: ClassVar[list[tuple[str, str]]] = [
            ("operate_run", "Can retry, resume and cancel acidic runs"),
        ]

    def __str__(self) -> str:
        return str(self.key)


class Event(models.Model):
    """One event of a run's step history (acidic's ``acidic_history``)."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(Run, on_delete=models.DO_NOTHING, related_name="events")
    step = models.CharField(max_length=255)
    event = models.CharField(max_length=16)
    at = models.DateTimeField()
    attempt = models.IntegerField()
    error = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = "acidic_history"
        ordering: ClassVar[list[str]] = ["id"]
