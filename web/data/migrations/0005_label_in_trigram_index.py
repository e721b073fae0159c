# The trigram index also keys every row by its label (btree_gin's GIN operator class for
# varchar), so `?label=X&search=word` reads the matches of the word within that label from the
# index instead of every match of the word in the table, then each row's label from the heap
# (a common word has thousands of matches at a million rows: 42 ms against 10 ms, docs/data.md).
# Built CONCURRENTLY (no write lock on a big table; outside a transaction, atomic = False), and
# the old index is dropped only once the new one serves searches.

import django.contrib.postgres.indexes
import django.db.models.expressions
import django.db.models.functions.text
from django.contrib.postgres.operations import (
    AddIndexConcurrently,
    BtreeGinExtension,
    RemoveIndexConcurrently,
)
from django.db import migrations, models


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('data', '0004_search_backlog_import'),
    ]

    operations = [
        BtreeGinExtension(),
        AddIndexConcurrently(
            model_name='data',
            index=django.contrib.postgres.indexes.GinIndex(django.db.models.expressions.F('label'), django.contrib.postgres.indexes.OpClass(django.db.models.functions.text.Upper('text'), name='gin_trgm_ops'), condition=models.Q(('search_indexed', True)), name='data_label_text_trgm_idx'),
        ),
        RemoveIndexConcurrently(
            model_name='data',
            name='data_text_trgm_indexed_idx',
        ),
    ]
