# The (model, label, id) index keeps the rows in the trigram index only (WHERE search_indexed),
# as the trigram index does: an import's rows wait in the search backlog and join it when the
# drain flips them, instead of each descending to its label's place during the COPY (40 % of
# a million-row import's database time, docs/benchmarks.md). Built CONCURRENTLY under a new
# name (no write lock on a big table; outside a transaction, atomic = False), the old index
# dropped once its replacement serves lists.

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("data", "0009_blank_checks_ascii_first"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="data",
            index=models.Index(
                fields=["model", "label", "id"],
                name="data_model_label_indexed_idx",
                condition=models.Q(search_indexed=True),
            ),
        ),
        RemoveIndexConcurrently(model_name="data", name="data_model_label_id_idx"),
    ]
