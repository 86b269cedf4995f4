# acidic's schema version 10 (its own SQL, migrations/<dialect>/0010_dashboard_indexes.sql).
from django.db import migrations

from acidic.django._schema import schema_version


class Migration(migrations.Migration):
    dependencies = [("acidic", "0009_executor")]
    operations = [schema_version(10)]
