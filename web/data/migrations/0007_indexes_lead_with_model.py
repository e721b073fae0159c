# Every list reads one model name's rows, so every index of `data` leads with the name: the
# (label, id), (created_at, id), (updated_at, id) and trigram indexes are replaced by the same
# with `model` first, plus (model, id) for the default ordering of a name whose rows are few or
# old among many others (the primary key alone would walk past every other name's rows).
# Built CONCURRENTLY (no write lock on a big table; outside a transaction, atomic = False), each
# old index dropped only once its replacement serves lists.

import django.contrib.postgres.indexes
import django.db.models.expressions
import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("data", "0006_data_model"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="data",
            index=models.Index(fields=["model", "id"], name="data_model_id_idx"),
        ),
        AddIndexConcurrently(
            model_name="data",
            index=models.Index(fields=["model", "label", "id"], name="data_model_label_id_idx"),
        ),
        RemoveIndexConcurrently(model_name="data", name="data_label_id_idx"),
        AddIndexConcurrently(
            model_name="data",
            index=models.Index(
                fields=["model", "created_at", "id"], name="data_model_created_id_idx"
            ),
        ),
        RemoveIndexConcurrently(model_name="data", name="data_created_id_idx"),
        AddIndexConcurrently(
            model_name="data",
            index=models.Index(
                fields=["model", "updated_at", "id"], name="data_model_updated_id_idx"
            ),
        ),
        RemoveIndexConcurrently(model_name="data", name="data_updated_id_idx"),
        AddIndexConcurrently(
            model_name="data",
            index=django.contrib.postgres.indexes.GinIndex(
                django.db.models.expressions.F("model"),
                django.db.models.expressions.F("label"),
                django.contrib.postgres.indexes.OpClass(
                    django.db.models.functions.text.Upper("text"), name="gin_trgm_ops"
                ),
                condition=models.Q(("search_indexed", True)),
                name="data_model_label_text_trgm_idx",
            ),
        ),
        RemoveIndexConcurrently(model_name="data", name="data_label_text_trgm_idx"),
    ]
