# acidic's schema version 9 (its own SQL, migrations/<dialect>/0009_executor.sql).
from django.db import migrations

from acidic.django._schema import schema_version


class Migration(migrations.Migration):
    dependencies = [("acidic", "0008_trace")]
    operations = [schema_version(9)]
