# Indexes for keyset pagination in every allowed ordering and a trigram index for ?search=.
# CREATE INDEX CONCURRENTLY cannot run in a transaction (atomic = False) and does not block
# writes to the table while it builds.

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently, TrigramExtension
from django.db import migrations, models


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('data', '0001_initial'),
    ]

    operations = [
        TrigramExtension(),
        AddIndexConcurrently(
            model_name='data',
            index=models.Index(fields=['created_at', 'id'], name='data_created_id_idx'),
        ),
        AddIndexConcurrently(
            model_name='data',
            index=models.Index(fields=['updated_at', 'id'], name='data_updated_id_idx'),
        ),
        AddIndexConcurrently(
            model_name='data',
            index=models.Index(fields=['label', 'created_at', 'id'], name='data_label_created_id_idx'),
        ),
        AddIndexConcurrently(
            model_name='data',
            index=models.Index(fields=['label', 'updated_at', 'id'], name='data_label_updated_id_idx'),
        ),
        AddIndexConcurrently(
            model_name='data',
            index=django.contrib.postgres.indexes.GinIndex(django.contrib.postgres.indexes.OpClass(django.db.models.functions.text.Upper('text'), name='gin_trgm_ops'), name='data_text_upper_trgm_idx'),
        ),
    ]
