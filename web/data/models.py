"""The labelled texts that training reads."""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models.functions import Upper

LABEL_MAX_LENGTH = 100
TRIGRAM_INDEX = "data_text_upper_trgm_idx"


class Data(models.Model):
    text = models.TextField()
    # varchar(100) enforces the length in the database; the checks below forbid blank values.
    label = models.CharField(max_length=LABEL_MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "data"
        ordering = ["id"]
        # Every list variant reads an index in its order (keyset pagination, ties broken by id);
        # `?search=` (icontains, which Django writes as UPPER(text) LIKE UPPER(...)) reads the
        # trigram index. Added concurrently by migration 0002: no write lock on a big table.
        indexes = [
            models.Index(fields=["label", "id"], name="data_label_id_idx"),
            models.Index(fields=["created_at", "id"], name="data_created_id_idx"),
            models.Index(fields=["updated_at", "id"], name="data_updated_id_idx"),
            models.Index(fields=["label", "created_at", "id"], name="data_label_created_id_idx"),
            models.Index(fields=["label", "updated_at", "id"], name="data_label_updated_id_idx"),
            GinIndex(OpClass(Upper("text"), name="gin_trgm_ops"), name=TRIGRAM_INDEX),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(text__regex=r"\S"), name="data_text_not_blank"
            ),
            models.CheckConstraint(
                condition=models.Q(label__regex=r"\S"), name="data_label_not_blank"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label}: {self.text[:40]}"
