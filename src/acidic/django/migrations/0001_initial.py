# acidic's schema version 1 (its own SQL, migrations/<dialect>/0001_initial.sql), and
# the read-only models the admin shows (managed = False: no table of Django's).
from django.db import migrations, models

from acidic.django._schema import schema_version


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        schema_version(1),
        migrations.CreateModel(
            name="Run",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "key",
                    models.CharField(db_column="idempotency_key", max_length=255, unique=True),
                ),
                ("job", models.CharField(max_length=255)),
                ("args", models.TextField()),
                ("steps", models.TextField()),
                ("status", models.CharField(max_length=16)),
                ("recovery_point", models.CharField(max_length=255, null=True)),
                ("ctx", models.TextField()),
                ("result", models.TextField(null=True)),
                ("error", models.TextField(null=True)),
                ("attempts", models.IntegerField()),
                ("lock_token", models.CharField(max_length=32, null=True)),
                ("locked_at", models.DateTimeField(null=True)),
                ("created_at", models.DateTimeField()),
                ("last_run_at", models.DateTimeField(null=True)),
                ("finished_at", models.DateTimeField(null=True)),
                ("queue", models.CharField(max_length=100, null=True)),
                ("priority", models.IntegerField(default=0)),
                ("run_at", models.DateTimeField(null=True)),
                ("lock_expires_at", models.DateTimeField(null=True)),
                ("attempt_limit", models.IntegerField(null=True)),
                ("cancel_requested", models.BooleanField(default=False)),
            ],
            options={
                "db_table": "acidic_runs",
                "ordering": ["-id"],
                "permissions": [("operate_run", "Can retry, resume and cancel acidic runs")],
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="Event",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("step", models.CharField(max_length=255)),
                ("event", models.CharField(max_length=16)),
                ("at", models.DateTimeField()),
                ("attempt", models.IntegerField()),
                ("error", models.TextField(null=True)),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=models.deletion.DO_NOTHING,
                        related_name="events",
                        to="acidic.run",
                    ),
                ),
            ],
            options={"db_table": "acidic_history", "ordering": ["id"], "managed": False},
        ),
    ]
