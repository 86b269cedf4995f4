# acidic's schema version 12 (its own SQL, migrations/<dialect>/0012_search_indexes.sql).
from django.db import migrations

from acidic.django._schema import schema_version


class Migration(migrations.Migration):
    dependencies = [("acidic", "0011_report_indexes")]
    operations = [schema_version(12)]
