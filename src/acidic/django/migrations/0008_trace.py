# acidic's schema version 8 (its own SQL, migrations/<dialect>/0008_trace.sql).
from django.db import migrations

from acidic.django._schema import schema_version


class Migration(migrations.Migration):
    dependencies = [("acidic", "0007_limits")]
    operations = [schema_version(8)]
