# Every list reads one model name's rows, so the B-trees of `data` lead with the name: the
# (label, id), (created_at, id) and (updated_at, id) indexes are replaced by the same with
# `model` first, plus (model, id) for the default ordering of a name whose rows are few or old
# among many others (the primary key alone would walk past every other name's rows). The
# trigram index stays as it is (docs/data.md: the name as a GIN key slowed `default` down).
# Built CONCURRENTLY (no write lock on a big table; outside a transaction, atomic = False), each
# old index dropped only once its replacement serves lists.

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
    ]
