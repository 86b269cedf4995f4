from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Ride",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("rider", models.CharField(max_length=100)),
                ("origin", models.CharField(max_length=100)),
                ("destination", models.CharField(max_length=100)),
                ("status", models.CharField(default="requested", max_length=20)),
                ("driver", models.CharField(blank=True, max_length=100)),
                ("fare_cents", models.IntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name="Charge",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("amount_cents", models.IntegerField()),
                (
                    "ride",
                    models.OneToOneField(on_delete=models.deletion.CASCADE, to="rides.ride"),
                ),
            ],
        ),
    ]
