# The imports whose rows may still wait in the search backlog, one row each: a search reads the
# backlog only while this table has a row (web/data/pagination.py), so after a drain it no longer
# walks the backlog index's dead entries or trusts statistics taken while rows waited. A backlog
# left by an earlier version (a drain cut short) gets one row here, so it is still found.

from django.db import migrations, models

MARK_EXISTING_BACKLOG = """
INSERT INTO data_search_backlog_import (rows, created_at)
SELECT count(*), now() FROM data WHERE NOT search_indexed HAVING count(*) > 0
"""


class Migration(migrations.Migration):

    dependencies = [
        ('data', '0003_search_backlog_and_import_indexes'),
    ]

    operations = [
        migrations.CreateModel(
            name='SearchBacklogImport',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('rows', models.BigIntegerField()),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'db_table': 'data_search_backlog_import',
            },
        ),
        migrations.RunSQL(MARK_EXISTING_BACKLOG, reverse_sql=migrations.RunSQL.noop),
    ]
