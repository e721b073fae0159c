"""The labelled texts that training reads."""

from typing import Any

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Ord, Upper
from django.db.models.lookups import Range

from core.model_names import DEFAULT_MODEL, MODEL_NAME_MAX_LENGTH

LABEL_MAX_LENGTH = 100
# The trigram index holds the rows whose search_indexed is true; the backlog index holds the
# others (imported rows not indexed yet, see web/data/search_backlog.py). The trigram index
# also keys each row by its label (btree_gin), so `?label=&search=` reads only that label's
# matches instead of every match of the words (a common word has thousands). Not by model name:
# as a key, `default` (most rows) made every search of `default` read its huge posting tree
# (twice the time at 300 000 rows, docs/data.md); a name's matches are filtered from the rows.
TRIGRAM_INDEX = "data_label_text_trgm_idx"
BACKLOG_INDEX = "data_search_backlog_idx"
# The (model, label, id) B-tree holds the indexed rows only, as the trigram index does: an
# import's rows are the only ones that land in the middle of it (one place per label), which
# cost 40 % of a million-row COPY (migration 0010). They join it when the drain flips them,
# an update that already writes every row into every index again. Lists that read by label
# read the waiting rows apart (web/data/pagination.py), through an index of their own while a
# big backlog waits (web/data/search_backlog.py).
LABEL_INDEX = "data_model_label_indexed_idx"


def not_blank(column: str) -> models.CheckConstraint:
    """The column holds something besides whitespace (`~ '\\S'`).

    A first character that is printable ASCII and not a space settles it at once: PostgreSQL
    runs a regular expression on a copy of the whole value in wide characters, which cost 8 %
    of a million-row import's time (migration 0009, docs/benchmarks.md). Only a value that
    starts otherwise (a space, a control or a non-ASCII character) is matched in full.
    """
    return models.CheckConstraint(
        condition=Q(Range(Ord(column), (33, 126))) | Q(**{f"{column}__regex": r"\S"}),
        name=f"data_{column}_not_blank",
    )


class Data(models.Model):
    text = models.TextField()
    # varchar(100) enforces the length in the database; the checks below forbid blank values.
    label = models.CharField(max_length=LABEL_MAX_LENGTH)
    # The model whose training reads the row (core/model_names.py); a name with rows exists in
    # registered_model. A constant default: adding the column rewrites nothing (migration 0006).
    model = models.CharField(
        max_length=MODEL_NAME_MAX_LENGTH, default=DEFAULT_MODEL, db_default=DEFAULT_MODEL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # False while the row waits for the trigram index: an import leaves that work to a drain
    # after its commit, so it does not wait for it; searches read such rows through the backlog.
    search_indexed = models.BooleanField(default=True, db_default=True)

    class Meta:
        db_table = "data"
        ordering = ["id"]
        # Every list shows one model name's rows (`WHERE model = ...`), so every B-tree leads
        # with the name: each ordering reads one name's range of an index in its order (keyset
        # pagination, ties broken by id), a small name among a million `default` rows as fast as
        # `default` itself. `?label=` with a time ordering walks the name's time index filtering
        # the label, or reads the label's rows and sorts them, whichever is cheaper (both
        # bounded: docs/data.md); `?search=` (icontains, which Django writes as UPPER(text) LIKE
        # UPPER(...)) reads the trigram index for indexed rows (keyed by label too) and the
        # backlog index for the others. Changed concurrently (migrations 0002, 0003, 0005,
        # 0007): no write lock on a big table.
        indexes = [
            models.Index(fields=["model", "id"], name="data_model_id_idx"),
            models.Index(
                fields=["model", "label", "id"],
                name=LABEL_INDEX,
                condition=models.Q(search_indexed=True),
            ),
            models.Index(fields=["model", "created_at", "id"], name="data_model_created_id_idx"),
            models.Index(fields=["model", "updated_at", "id"], name="data_model_updated_id_idx"),
            GinIndex(
                F("label"),
                OpClass(Upper("text"), name="gin_trgm_ops"),
                name=TRIGRAM_INDEX,
                condition=models.Q(search_indexed=True),
            ),
            models.Index(
                fields=["id"], name=BACKLOG_INDEX, condition=models.Q(search_indexed=False)
            ),
        ]
        constraints = [not_blank("text"), not_blank("label")]

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A row written through the API pays for its own trigram entry, so it never re-enters
        # the backlog (an update of a row the drain has not reached yet indexes it at once).
        self.search_indexed = True
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.label}: {self.text[:40]}"


class SearchBacklogImport(models.Model):
    """One committed import whose rows may still wait in the search backlog.

    Written in the import's own transaction and deleted by the drain once it has indexed every
    row of that import, so an empty table means an empty backlog, whatever the planner's
    statistics or the dead index entries a drain leaves: a search then skips the backlog.
    """

    rows = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "data_search_backlog_import"

    def __str__(self) -> str:
        return f"import of {self.rows} rows at {self.created_at}"
