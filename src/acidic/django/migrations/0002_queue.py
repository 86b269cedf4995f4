# acidic's schema version 2 (its own SQL, migrations/<dialect>/0002_queue.sql).
from django.db import migrations

from acidic.django._schema import schema_version


class Migration(migrations.Migration):
    dependencies = [("acidic", "0001_initial")]
    operations = [schema_version(2)]
