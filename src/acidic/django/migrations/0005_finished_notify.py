# acidic's schema version 5 (its own SQL, migrations/<dialect>/0005_finished_notify.sql).
from django.db import migrations

from acidic.django._schema import schema_version


class Migration(migrations.Migration):
    dependencies = [("acidic", "0004_workers")]
    operations = [schema_version(5)]
