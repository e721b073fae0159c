"""What the registry endpoints read and answer."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from web.data.serializers import RejectUnknownFieldsMixin
from web.registry.models import AuditEvent, ModelVersion, TrainingRun

REASON_MAX_CHARS = 1000


class TrainingRunSerializer(serializers.ModelSerializer):
    """A training run as PostgreSQL keeps it (after Redis forgets the job)."""

    version = serializers.CharField(source="version_id", allow_null=True, read_only=True)

    class Meta:
        model = TrainingRun
        fields = ["id", "status", "requested_by", "created_at", "started_at", "finished_at",
                  "rows", "fingerprint", "parameters", "metrics", "error", "version",
                  "promoted"]  # fmt: skip
        read_only_fields = fields


class ModelVersionSerializer(serializers.ModelSerializer):
    """A version in lists: its scores, aliases, gate decision and whether it is deleted."""

    run = serializers.CharField(source="run_id", allow_null=True, read_only=True)
    aliases = serializers.SerializerMethodField()
    accuracy = serializers.SerializerMethodField()
    macro_f1 = serializers.SerializerMethodField()
    promoted = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["version", "run", "created_at", "rows", "labels", "accuracy", "macro_f1",
                  "aliases", "promoted", "deleted_at", "files_removed_at"]  # fmt: skip
        read_only_fields = fields

    def get_aliases(self, obj: ModelVersion) -> list[str]:
        return sorted(alias.name for alias in obj.aliases.all())

    def get_accuracy(self, obj: ModelVersion) -> float | None:
        value = (obj.metrics or {}).get("accuracy")
        return float(value) if isinstance(value, int | float) else None

    def get_macro_f1(self, obj: ModelVersion) -> float | None:
        return obj.macro_f1

    def get_promoted(self, obj: ModelVersion) -> bool | None:
        return (obj.gate or {}).get("promoted") if obj.gate else None


class ModelVersionDetailSerializer(ModelVersionSerializer):
    """One version in full: metrics per label, the gate's report and its lineage."""

    lineage = serializers.SerializerMethodField()

    class Meta(ModelVersionSerializer.Meta):
        fields = [*ModelVersionSerializer.Meta.fields, "metrics", "gate", "fingerprint",
                  "sha256", "library_versions", "lineage"]  # fmt: skip
        read_only_fields = fields

    def get_lineage(self, obj: ModelVersion) -> dict[str, Any]:
        """The run that trained it, on which data, and which champion it was judged against."""
        run = obj.run
        return {
            "run": TrainingRunSerializer(run).data if run else None,
            "data_fingerprint": obj.fingerprint,
            "judged_against": ((obj.gate or {}).get("champion") or {}).get("version"),
        }


class AliasMoveSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    version = serializers.CharField(
        allow_null=True, max_length=64, help_text="The version to point at (null clears challenger)"
    )
    expected_version = serializers.CharField(
        required=False, allow_null=True, max_length=64,
        help_text="Refuse (409) unless the alias names this version now (null: names none)",
    )  # fmt: skip
    reason = serializers.CharField(max_length=REASON_MAX_CHARS, help_text="Why, for the audit")
    force = serializers.BooleanField(
        default=False, help_text="Admin only: move the champion even though the gate refuses"
    )


class RollbackSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    reason = serializers.CharField(max_length=REASON_MAX_CHARS, help_text="Why, for the audit")
    expected_version = serializers.CharField(
        required=False, allow_null=True, max_length=64,
        help_text="Refuse (409) unless the champion is this version now",
    )  # fmt: skip


class ReasonSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    reason = serializers.CharField(max_length=REASON_MAX_CHARS, help_text="Why, for the audit")


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor", "action", "target", "before", "after", "reason",
                  "request_id"]  # fmt: skip
        read_only_fields = fields
