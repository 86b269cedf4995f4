# acidic's schema version 7 (its own SQL, migrations/<dialect>/0007_limits.sql).
from django.db import migrations

from acidic.django._schema import schema_version


class Migration(migrations.Migration):
    dependencies = [("acidic", "0006_children")]
    operations = [schema_version(7)]
