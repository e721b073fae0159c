"""The labelled texts that training reads."""

from django.db import models

LABEL_MAX_LENGTH = 100


class Data(models.Model):
    text = models.TextField()
    # varchar(100) enforces the length in the database; the checks below forbid blank values.
    label = models.CharField(max_length=LABEL_MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "data"
        ordering = ["id"]
        indexes = [models.Index(fields=["label", "id"], name="data_label_id_idx")]
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
