"""Model names on the registry's routes: which name a request means, and `GET /api/models/`.

A registry route names its model in the path (`/api/models/{name}/...`; today's routes without
one mean `default`), a list filters by `?model=`. Either way the name is checked here, in one
order: a name that cannot exist is a 404 in a path (a 400 in a query), then the token's scope
(403, so a limited token learns nothing of names it may not use), then whether it is
registered (404). Names are created by an editor's first rows under them (web/data), never here.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import pagination, serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from core.model_names import (
    DEFAULT_MODEL,
    MODEL_NAME_MAX_LENGTH,
    MODEL_NAME_PATTERN,
    InvalidModelName,
    check_model_name,
    is_model_name,
)
from web.auth import scope
from web.data.serializers import ErrorSerializer
from web.errors import NotFound
from web.registry import selectors


def resolve_model(request: Any, name: str = DEFAULT_MODEL) -> str:
    """The model a route's path names: 404 unless registered, 403 outside the token's scope."""
    if not is_model_name(name):
        raise NotFound(f"No model {name!r}.")
    return _registered_within_scope(request, name)


def filtered_model(request: Any, given: str | None) -> str | None:
    """The model a `?model=` filter names (validated by `model_filter`), checked like a path's."""
    return None if given is None else _registered_within_scope(request, given)


def _registered_within_scope(request: Any, name: str) -> str:
    scope.require_model(request, name)
    if not selectors.model_exists(name):
        raise NotFound(f"No model {name!r}: a name is created by the first rows written under it.")
    return name


def _check_name(value: str) -> None:
    try:
        check_model_name(value)
    except InvalidModelName as exc:
        raise serializers.ValidationError(str(exc)) from None


def model_filter() -> serializers.RegexField:
    """The `?model=` query parameter: a model name (a 400 when it cannot be one)."""
    return serializers.RegexField(
        rf"^{MODEL_NAME_PATTERN}$",
        required=False,
        max_length=MODEL_NAME_MAX_LENGTH,
        validators=[_check_name],
        help_text="Only this model name's entries",
    )


class ModelSummarySerializer(serializers.Serializer):
    name = serializers.CharField()
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(allow_null=True)
    champion = serializers.CharField(allow_null=True, help_text="The version served")
    challenger = serializers.CharField(allow_null=True)
    announced = serializers.CharField(
        allow_null=True, help_text="The champion Redis tells the replicas to serve"
    )
    replicas_holding = serializers.IntegerField(
        help_text="Replicas that have this model loaded (others load it on first use)"
    )
    replicas_serving_champion = serializers.IntegerField()
    in_sync = serializers.BooleanField(help_text="Every replica holding it serves the champion")


class ByName(pagination.CursorPagination):
    ordering = ("name",)
    page_size = 100


@extend_schema(
    summary="The model names, with their champion and what the replicas serve",
    description="A token limited to some names sees only those.",
    responses={
        200: ModelSummarySerializer(many=True),
        404: OpenApiResponse(ErrorSerializer, description="not_found: the cursor is invalid"),
    },
)
class ModelList(ListAPIView):
    serializer_class = ModelSummarySerializer
    pagination_class = ByName

    def get_queryset(self) -> Any:
        return selectors.model_names(scope.allowed_models(self.request))

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        assert page is not None  # always paginated
        summaries = selectors.model_summaries(page)
        return self.get_paginated_response(ModelSummarySerializer(summaries, many=True).data)
