# acidic's schema version 6 (its own SQL, migrations/<dialect>/0006_children.sql).
from django.db import migrations

from acidic.django._schema import schema_version


class Migration(migrations.Migration):
    dependencies = [("acidic", "0005_finished_notify")]
    operations = [schema_version(6)]
