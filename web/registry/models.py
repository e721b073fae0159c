"""The model registry's records: training runs, model versions, aliases and the audit trail.

PostgreSQL is the truth about what was trained, what exists and what should be served; Redis
only carries live job state and the desired versions to the serving processes. The worker writes
runs and versions with raw SQL (worker/registry_sql.py) against these tables, so their names and
columns are a contract: change them together.
"""

from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

from core.model_names import DEFAULT_MODEL, MODEL_NAME_MAX_LENGTH

VERSION_MAX_LENGTH = 64


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AliasName(models.TextChoices):
    CHAMPION = "champion"
    PREVIOUS = "previous"
    CHALLENGER = "challenger"


def model_name_field() -> models.CharField:
    """The model name a record belongs to (core/model_names.py); rows from before names existed
    belong to `default`. A plain column, not a foreign key: the worker's raw SQL writes it, and
    names are created (RegisteredModel) before anything is recorded under them."""
    return models.CharField(
        max_length=MODEL_NAME_MAX_LENGTH, default=DEFAULT_MODEL, db_default=DEFAULT_MODEL
    )


class RegisteredModel(models.Model):
    """A model name: its own rows, trainings, versions, aliases and audit trail."""

    name = models.CharField(primary_key=True, max_length=MODEL_NAME_MAX_LENGTH)
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())
    created_by = models.CharField(max_length=200, null=True, blank=True)

    class Meta:
        db_table = "registered_model"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TrainingRun(models.Model):
    """One training job as it ran, kept after Redis forgets the job."""

    id = models.CharField(primary_key=True, max_length=100)  # the job id
    model = model_name_field()
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    requested_by = models.CharField(max_length=200, null=True, blank=True)
    request_id = models.CharField(max_length=200, null=True, blank=True)  # of the train request
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows = models.BigIntegerField(null=True, blank=True)
    fingerprint = models.JSONField(null=True, blank=True)
    parameters = models.JSONField(null=True, blank=True)
    metrics = models.JSONField(null=True, blank=True)  # per-label figures included
    error = models.TextField(null=True, blank=True)
    version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    promoted = models.BooleanField(null=True, blank=True)

    class Meta:
        db_table = "training_run"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="training_run_created_idx"),
            models.Index(fields=["model", "-created_at", "-id"], name="training_run_model_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=RunStatus.values), name="training_run_status_valid"
            )
        ]

    def __str__(self) -> str:
        return f"run {self.id} ({self.status})"


class ModelVersion(models.Model):
    """A published version directory and everything needed to judge and reproduce it."""

    version = models.CharField(primary_key=True, max_length=VERSION_MAX_LENGTH)
    model = model_name_field()
    run = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="versions"
    )
    created_at = models.DateTimeField()
    rows = models.BigIntegerField()
    labels = models.JSONField()
    metrics = models.JSONField()
    fingerprint = models.JSONField()
    sha256 = models.JSONField()
    library_versions = models.JSONField()
    gate = models.JSONField(null=True, blank=True)  # the promotion gate's report
    deleted_at = models.DateTimeField(null=True, blank=True)
    files_removed_at = models.DateTimeField(null=True, blank=True)
    # When its files were deleted from the object store (MODEL_STORE_URL): files_removed_at is
    # set first (restore refuses the version from then on), this once the deletion succeeded; a
    # version with the first and not this is deleted again at the worker's next pruning.
    store_files_deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "model_version"
        ordering = ["-created_at", "-version"]
        indexes = [
            models.Index(fields=["-created_at", "-version"], name="model_version_created_idx"),
            models.Index(
                fields=["model", "-created_at", "-version"], name="model_version_model_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.version

    @property
    def macro_f1(self) -> float | None:
        value = (self.metrics or {}).get("macro_f1")
        return float(value) if isinstance(value, int | float) else None


class Alias(models.Model):
    """A name for a version of one model: `champion` is served, `previous` is rollback's."""

    model = model_name_field()
    name = models.CharField(max_length=16, choices=AliasName.choices)
    version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="aliases"
    )
    updated_by = models.CharField(max_length=200, null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "model_alias"
        ordering = ["model", "name"]
        verbose_name_plural = "aliases"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(name__in=AliasName.values), name="model_alias_name_valid"
            ),
            models.UniqueConstraint(fields=["model", "name"], name="model_alias_model_name_key"),
        ]

    def __str__(self) -> str:
        prefix = "" if self.model == DEFAULT_MODEL else f"{self.model}/"
        return f"{prefix}{self.name} -> {self.version_id or '(none)'}"


class AuditEvent(models.Model):
    """One change: who, what, when, why. Append-only (a trigger refuses UPDATE and DELETE)."""

    at = models.DateTimeField(default=timezone.now, db_default=Now())
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True, default="")
    request_id = models.CharField(max_length=200, null=True, blank=True)
    # The model name a change concerns; None for changes of no model (tokens). Events recorded
    # before names existed concern `default` (migration 0005).
    model = models.CharField(max_length=MODEL_NAME_MAX_LENGTH, null=True, blank=True)

    class Meta:
        db_table = "audit_event"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["target", "-id"], name="audit_event_target_idx"),
            models.Index(fields=["model", "target", "-id"], name="audit_event_model_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}"
