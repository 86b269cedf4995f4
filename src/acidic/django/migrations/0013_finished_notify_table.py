# acidic's schema version 13 (its own SQL, migrations/<dialect>/0013_finished_notify_table.sql).
from django.db import migrations

from acidic.django._schema import schema_version


class Migration(migrations.Migration):
    dependencies = [("acidic", "0012_search_indexes")]
    operations = [schema_version(13)]
