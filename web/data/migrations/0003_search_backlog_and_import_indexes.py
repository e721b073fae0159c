# Imported rows wait for the trigram index in a backlog: a search_indexed flag, the trigram index
# made partial (WHERE search_indexed) and a small partial index of the backlog's ids. Nothing here
# blocks writes on a big table: a column with a constant default is only catalog work
# (PostgreSQL 11+), the indexes are built CONCURRENTLY (outside a transaction, atomic = False),
# and the old trigram index is dropped only once the new one serves searches. The two
# (label, time, id) indexes go: each cost an import as much as the heap and the primary key
# together, and `?label=` with a time ordering stays fast without them (docs/data.md).

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('data', '0002_list_and_search_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='data',
            name='search_indexed',
            field=models.BooleanField(db_default=True, default=True),
        ),
        AddIndexConcurrently(
            model_name='data',
            index=django.contrib.postgres.indexes.GinIndex(django.contrib.postgres.indexes.OpClass(django.db.models.functions.text.Upper('text'), name='gin_trgm_ops'), condition=models.Q(('search_indexed', True)), name='data_text_trgm_indexed_idx'),
        ),
        AddIndexConcurrently(
            model_name='data',
            index=models.Index(condition=models.Q(('search_indexed', False)), fields=['id'], name='data_search_backlog_idx'),
        ),
        RemoveIndexConcurrently(
            model_name='data',
            name='data_text_upper_trgm_idx',
        ),
        RemoveIndexConcurrently(
            model_name='data',
            name='data_label_created_id_idx',
        ),
        RemoveIndexConcurrently(
            model_name='data',
            name='data_label_updated_id_idx',
        ),
    ]
