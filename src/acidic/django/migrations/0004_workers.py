# acidic's schema version 4 (its own SQL, migrations/<dialect>/0004_workers.sql).
from django.db import migrations

from acidic.django._schema import schema_version


class Migration(migrations.Migration):
    dependencies = [("acidic", "0003_claim_order")]
    operations = [schema_version(4)]
