"""The /api/data/ endpoints: thin views over the Data model."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from core.model_names import DEFAULT_MODEL
from web.auth.scope import allowed_models, require_model
from web.data.filters import LabelFilter, NulMatchesNothingMixin, TrigramSearchFilter
from web.data.model_names import (
    MODEL_QUERY_PARAMETER,
    register_on_first_write,
    requested_model,
)
from web.data.models import Data
from web.data.pagination import KeysetPagination
from web.data.serializers import DataSerializer, ErrorSerializer
from web.data.statement_timeout import UNAVAILABLE_DESCRIPTION
from web.errors import ValidationFailed

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input"),
    403: OpenApiResponse(
        ErrorSerializer,
        description="forbidden: the token's role is too low, or the token may not use the model",
    ),
    404: OpenApiResponse(ErrorSerializer, description="No such row"),
    415: OpenApiResponse(ErrorSerializer, description="Body is not JSON"),
    503: OpenApiResponse(ErrorSerializer, description=UNAVAILABLE_DESCRIPTION),
}
LIST_ERRORS = {
    **ERRORS,
    404: OpenApiResponse(
        ErrorSerializer, description="not_found: no such model name, or an invalid cursor"
    ),
}


@extend_schema_view(
    list=extend_schema(
        summary="List rows, a cursor page at a time",
        description="The rows of one model name (`?model=`, default `default`). Pages follow "
        "`next`/`previous` links (keyset cursors): every page, however deep, costs the same. "
        "`ordering` takes one field; ties are broken by id.",
        parameters=[MODEL_QUERY_PARAMETER],
        responses={200: DataSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(summary="Get one row", responses={200: DataSerializer, **ERRORS}),
    update=extend_schema(summary="Replace a row", responses={200: DataSerializer, **ERRORS}),
    partial_update=extend_schema(summary="Change a row", responses={200: DataSerializer, **ERRORS}),
    destroy=extend_schema(
        summary="Delete a row",
        responses={204: None, 403: ERRORS[403], 404: ERRORS[404], 503: ERRORS[503]},
    ),
)
class DataViewSet(NulMatchesNothingMixin, viewsets.ModelViewSet):
    queryset = Data.objects.all()
    serializer_class = DataSerializer
    lookup_value_regex = "[0-9]+"
    pagination_class = KeysetPagination
    filter_backends = [
        DjangoFilterBackend,
        TrigramSearchFilter,
    ]
    filterset_class = LabelFilter
    search_fields = ["text"]
    # Ordering (one field, ties broken by id) is applied by KeysetPagination.

    @property
    def pages_searches(self) -> bool:
        """A list's search, while no import waits, is read by its pagination
        (web/data/search_pages.py); one row's URL (get, change, delete) is filtered as DRF does."""
        return self.action == "list"

    def get_queryset(self) -> QuerySet[Data]:
        if self.action == "list":
            # Each list shows one name's rows; the pagination counts that name's rows.
            self.listed_model = requested_model(self.request)
            return Data.objects.filter(model=self.listed_model)
        allowed = allowed_models(self.request)
        # A row id is global; a row of a name the token may not use is not there for it (404).
        return Data.objects.all() if allowed is None else Data.objects.filter(model__in=allowed)

    def perform_create(self, serializer: serializers.BaseSerializer[Data]) -> None:
        model = serializer.validated_data.get("model", DEFAULT_MODEL)
        require_model(self.request, model)
        with transaction.atomic():
            register_on_first_write({model}, request=self.request)
            serializer.save()

    def perform_update(self, serializer: serializers.BaseSerializer[Data]) -> None:
        model = serializer.validated_data.get("model")
        if model is None or serializer.instance is None or model == serializer.instance.model:
            serializer.save()
            return
        require_model(self.request, model)  # moving a row: the token may use both names
        with transaction.atomic():
            register_on_first_write({model}, request=self.request)
            serializer.save()

    @extend_schema(
        summary="Create one row, or many in one transaction",
        description=f"A JSON object creates one row; a JSON list creates up to "
        f"{settings.BULK_MAX_ROWS} rows, all or nothing. Errors name the failed items by index. "
        "Each row may name its model (`model`, default `default`; a list may mix names); the "
        "first rows written under a new name create the name.",
        request=DataSerializer,
        responses={201: DataSerializer, **ERRORS},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if isinstance(request.data, list):
            return self._create_many(request.data)
        if not isinstance(request.data, dict):
            raise exceptions.ValidationError("Expected a JSON object, or a list of objects.")
        return super().create(request, *args, **kwargs)

    def _create_many(self, items: list[Any]) -> Response:
        if not items:
            raise exceptions.ValidationError("The list is empty: nothing to create.")
        if len(items) > settings.BULK_MAX_ROWS:
            raise exceptions.ValidationError(
                f"At most {settings.BULK_MAX_ROWS} rows per request, got {len(items)}."
            )
        serializer = self.get_serializer(data=items, many=True)
        if not serializer.is_valid():
            failed = [
                {"index": int(index), "fields": _as_field_errors(errors)}
                for index, errors in sorted(serializer.errors.items())
            ]
            raise ValidationFailed(
                f"{len(failed)} of {len(items)} items are invalid; nothing was created.",
                items=failed,
            )
        models = {fields.get("model", DEFAULT_MODEL) for fields in serializer.validated_data}
        for model in sorted(models):
            require_model(self.request, model)
        with transaction.atomic():
            register_on_first_write(models, request=self.request)
            rows = Data.objects.bulk_create(
                [Data(**fields) for fields in serializer.validated_data], batch_size=2000
            )
        return Response(DataSerializer(rows, many=True).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not isinstance(request.data, dict):
            raise exceptions.ValidationError("Expected a JSON object.")
        return super().update(request, *args, **kwargs)


def _as_field_errors(errors: Any) -> dict[str, list[str]]:
    if isinstance(errors, dict):
        return {name: [str(m) for m in messages] for name, messages in errors.items()}
    return {"non_field_errors": [str(errors)]}
