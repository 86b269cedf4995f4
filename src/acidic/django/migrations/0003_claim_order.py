# acidic's schema version 3 (its own SQL, migrations/<dialect>/0003_claim_order.sql).
from django.db import migrations

from acidic.django._schema import schema_version


class Migration(migrations.Migration):
    dependencies = [("acidic", "0002_queue")]
    operations = [schema_version(3)]
