# acidic's schema version 11 (its own SQL, migrations/<dialect>/0011_report_indexes.sql).
from django.db import migrations

from acidic.django._schema import schema_version


class Migration(migrations.Migration):
    dependencies = [("acidic", "0010_dashboard_indexes")]
    operations = [schema_version(11)]
