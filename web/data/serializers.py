"""Validation of data rows at the edge: strict types, no unknown fields, size limits."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.model_names import (
    DEFAULT_MODEL,
    MODEL_NAME_MAX_LENGTH,
    MODEL_NAME_PATTERN,
    InvalidModelName,
    check_model_name,
)
from web.data import rules
from web.data.models import LABEL_MAX_LENGTH, Data


class RuleCharField(serializers.CharField):
    """A string field validated by one of `web.data.rules` (the import applies the same rules).

    The CharField arguments (max_length) describe the field in the OpenAPI schema; the rule
    alone decides what is accepted (CharField's own blank and length checks are bypassed).
    """

    def __init__(self, *, clean: Callable[[Any], str], **kwargs: Any) -> None:
        self.clean = clean
        super().__init__(trim_whitespace=False, **kwargs)
        self.validators: list[Any] = []

    def run_validation(self, data: Any = serializers.empty) -> Any:
        return serializers.Field.run_validation(self, data)

    def to_internal_value(self, data: Any) -> str:
        try:
            return self.clean(data)
        except rules.RowProblem as problem:
            raise serializers.ValidationError(str(problem)) from None


@extend_schema_field(
    {"type": "string", "pattern": f"^{MODEL_NAME_PATTERN}$", "maxLength": MODEL_NAME_MAX_LENGTH}
)
class ModelNameField(serializers.CharField):
    """A model name (core/model_names.py): a string only, never a number turned into one."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, max_length=MODEL_NAME_MAX_LENGTH, **kwargs)
        self.validators: list[Any] = []

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.")
        try:
            return check_model_name(data)
        except InvalidModelName as error:
            raise serializers.ValidationError(str(error)) from None


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

    text = RuleCharField(
        clean=rules.clean_text,
        max_length=settings.TEXT_MAX_CHARS,
        help_text=f"Text to learn from; not blank, at most {settings.TEXT_MAX_CHARS} characters.",
    )
    label = RuleCharField(
        clean=rules.clean_label,
        max_length=LABEL_MAX_LENGTH,
        help_text=f"The class of the text; not blank, at most {LABEL_MAX_LENGTH} characters.",
    )

    # Not defaulted here: a PUT without it keeps the row's name (a create gets `default`).
    model = ModelNameField(
        required=False,
        help_text=f"The model whose training reads the row (default `{DEFAULT_MODEL}`). The "
        "first rows written under a new name create it.",
    )

    class Meta:
        model = Data
        fields = ["id", "text", "label", "model", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def to_representation(self, instance: Data) -> dict[str, Any]:
        """The row as the fields above write it, without a field object per value.

        A list page is 50 rows of six fields; DRF's way (a deep copy of the fields per
        serializer, then per value an attribute lookup and, per date, the current time zone
        read from context-local storage) was most of a list request's CPU time. The output is
        the same: tests/web/test_data_representation.py compares it with DRF's own fields.
        """
        zone = timezone.get_current_timezone()
        return {
            "id": instance.pk,
            "text": instance.text,
            "label": instance.label,
            "model": instance.model,
            "created_at": iso_8601(instance.created_at, zone),
            "updated_at": iso_8601(instance.updated_at, zone),
        }


def iso_8601(value: datetime.datetime | None, zone: datetime.tzinfo) -> str | None:
    """A stored (aware) time as DRF's DateTimeField writes it: in `zone`, `Z` for UTC."""
    if value is None:
        return None
    text = value.astimezone(zone).isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


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
