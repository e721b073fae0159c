"""What the registry endpoints read and answer."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from web.data import rules
from web.data.serializers import RejectUnknownFieldsMixin, RuleCharField
from web.registry.models import AuditEvent, ModelVersion, TrainingRun

REASON_MAX_CHARS = 1000
VERSION_PATTERN = r"^[0-9A-Za-z_.-]{1,64}$"
_NOT_STORABLE = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL text cannot hold these


def clean_reason(value: Any) -> str:
    """A reason for the audit: a string, not blank, storable, at most REASON_MAX_CHARS."""
    if not isinstance(value, str):
        raise rules.RowProblem("Must be a string.")
    if not value.strip():
        raise rules.RowProblem("Say why: the reason goes into the audit trail.")
    if len(value) > REASON_MAX_CHARS:
        raise rules.RowProblem(f"At most {REASON_MAX_CHARS} characters.")
    if _NOT_STORABLE.search(value):
        raise rules.RowProblem("Null characters and lone surrogates are not allowed.")
    return value


def version_field(help_text: str, *, required: bool = True) -> serializers.RegexField:
    """A version name (as the worker makes them), or null."""
    return serializers.RegexField(
        VERSION_PATTERN,
        max_length=64,
        allow_null=True,
        required=required,
        trim_whitespace=False,
        help_text=help_text,
    )


def reason_field() -> RuleCharField:
    return RuleCharField(
        clean=clean_reason, max_length=REASON_MAX_CHARS, help_text="Why, for the audit trail"
    )


class TrainingRunSerializer(serializers.ModelSerializer):
    """A training run as PostgreSQL keeps it (after Redis forgets the job)."""

    version = serializers.CharField(source="version_id", allow_null=True, read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "model",
            "status",
            "requested_by",
            "request_id",
            "created_at",
            "started_at",
            "finished_at",
            "rows",
            "fingerprint",
            "parameters",
            "metrics",
            "error",
            "version",
            "promoted",
        ]
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
        fields = [
            "version",
            "model",
            "run",
            "created_at",
            "rows",
            "labels",
            "accuracy",
            "macro_f1",
            "aliases",
            "promoted",
            "deleted_at",
            "files_removed_at",
        ]
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


class LineageSerializer(serializers.Serializer):
    run = TrainingRunSerializer(allow_null=True, help_text="The run that trained it")
    data_fingerprint = serializers.JSONField(help_text="Rows, highest id and sha256 of its data")
    judged_against = serializers.CharField(
        allow_null=True, help_text="The champion the gate compared it with"
    )


class ModelVersionDetailSerializer(ModelVersionSerializer):
    """One version in full: metrics per label, the gate's report and its lineage."""

    lineage = serializers.SerializerMethodField()

    class Meta(ModelVersionSerializer.Meta):
        fields = [
            *ModelVersionSerializer.Meta.fields,
            "metrics",
            "gate",
            "fingerprint",
            "sha256",
            "library_versions",
            "lineage",
        ]
        read_only_fields = fields

    @extend_schema_field(LineageSerializer)
    def get_lineage(self, obj: ModelVersion) -> dict[str, Any]:
        """The run that trained it, on which data, and which champion it was judged against."""
        run = obj.run
        return {
            "run": TrainingRunSerializer(run).data if run else None,
            "data_fingerprint": obj.fingerprint,
            "judged_against": ((obj.gate or {}).get("champion") or {}).get("version"),
        }


class AliasMoveSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    version = version_field("The version to point at (null clears challenger)")
    expected_version = version_field(
        "Refuse (409) unless the alias names this version now (null: names none)", required=False
    )
    reason = reason_field()
    force = serializers.BooleanField(
        default=False, help_text="Admin only: move the champion even though the gate refuses"
    )


class RollbackSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    reason = reason_field()
    expected_version = version_field(
        "Refuse (409) unless the champion is this version now", required=False
    )


class ReasonSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    reason = reason_field()


class DeleteQuerySerializer(serializers.Serializer):
    # The pattern says in the schema what the field refuses anyway: PostgreSQL text holds no NUL.
    reason = serializers.RegexField(
        r"^[^\x00]*$",
        required=False,
        allow_blank=True,
        max_length=REASON_MAX_CHARS,
        help_text="Why, for the audit trail",
    )


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "at",
            "actor",
            "action",
            "target",
            "before",
            "after",
            "reason",
            "request_id",
            "model",
        ]
        read_only_fields = fields


class ShadowSerializer(serializers.Serializer):
    compared = serializers.IntegerField()
    agreed = serializers.IntegerField()
    agreement_rate = serializers.FloatField(allow_null=True)


class AliasStateSerializer(serializers.Serializer):
    version = serializers.CharField(allow_null=True)
    updated_by = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)


class ChallengerStateSerializer(AliasStateSerializer):
    shadow = ShadowSerializer(help_text="Live predictions the challenger also scored")


class AliasesSerializer(serializers.Serializer):
    champion = AliasStateSerializer()
    previous = AliasStateSerializer()
    challenger = ChallengerStateSerializer()


class ReplicaSerializer(serializers.Serializer):
    """One algorithm process, as it reports what it holds of the model."""

    replica = serializers.CharField(help_text="<hostname>:<pid> of an algorithm process")
    holds_model = serializers.BooleanField(
        help_text="It has the model loaded (`default` always; another name once asked for)"
    )
    version = serializers.CharField(allow_null=True, help_text="The champion it serves")
    challenger = serializers.CharField(allow_null=True)
    serves_champion = serializers.BooleanField(
        allow_null=True, help_text="null where it does not hold the model"
    )
    error = serializers.CharField(allow_null=True, help_text="Its last load error")
    error_version = serializers.CharField(allow_null=True)
    loaded_at = serializers.CharField(allow_null=True)
    memory_bytes = serializers.IntegerField(allow_null=True, help_text="What the model takes")
    last_used_at = serializers.CharField(allow_null=True)
    pinned = serializers.BooleanField(allow_null=True, help_text="Never unloaded")
    shadow = serializers.JSONField(
        allow_null=True,
        help_text="The model's shadow counts on this replica; null where it does not hold it",
    )


class AliasOverviewSerializer(serializers.Serializer):
    """Desired versions (PostgreSQL), what Redis announced, and what each replica loaded."""

    model = serializers.CharField(help_text="The model name")
    aliases = AliasesSerializer()
    announced = serializers.JSONField(allow_null=True)
    replicas = ReplicaSerializer(many=True)
    in_sync = serializers.BooleanField(help_text="Every replica holding it serves the champion")
