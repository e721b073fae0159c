"""Validation of data rows at the edge: strict types, no unknown fields, size limits."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from web.data.models import LABEL_MAX_LENGTH, Data


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of converting them to text."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class RejectUnknownFieldsMixin:
    """Unknown keys in a write are a mistake the client should hear about, not silently dropped."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}  # type: ignore[attr-defined]
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)  # type: ignore[misc]


class DataSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """A labelled text, one row that training learns from."""

    text = StrictCharField(
        max_length=settings.TEXT_MAX_CHARS,
        trim_whitespace=False,
        help_text=f"Text to learn from; not blank, at most {settings.TEXT_MAX_CHARS} characters.",
    )
    label = StrictCharField(
        max_length=LABEL_MAX_LENGTH,
        help_text=f"The class of the text; not blank, at most {LABEL_MAX_LENGTH} characters.",
    )

    class Meta:
        model = Data
        fields = ["id", "text", "label", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_text(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.")
        return value


class ErrorSerializer(serializers.Serializer):
    """The error shape of every 4xx and 5xx answer."""

    error = serializers.CharField(help_text="Machine-readable code, e.g. validation_error.")
    detail = serializers.CharField(help_text="What went wrong, for a person.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Per-field messages, for validation errors on one object.",
    )
    items = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text='Per-item messages for bulk writes: [{"index": 3, "fields": {...}}].',
    )
