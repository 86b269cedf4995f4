from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.CreateModel(
            name="Ride",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("rider", models.CharField(max_length=100)),
                ("stage", models.CharField(max_length=100)),
                ("charged", models.BooleanField(default=False)),
            ],
        ),
        migrations.AddConstraint(
            model_name="ride",
            constraint=models.UniqueConstraint(fields=("rider", "stage"), name="ride_stage_once"),
        ),
        migrations.CreateModel(
            name="Booking",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("seat", models.CharField(max_length=100)),
            ],
        ),
    ]
