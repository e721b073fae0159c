"""The registry's HTTP API: thin DRF views over selectors (reads) and services (changes).

The actor and request id come from the authentication and request-id middlewares
(`request.actor`, `request.request_id`); route roles are checked by the authentication
middleware, and the admin-only parts of an editor route (champion/previous moves, `force`) here.
Every view serves two routes: `/api/models/{name}/...` and today's `/api/models/...`, which
means `default` (the `name` keyword is absent); the name is checked by web/registry/names.py.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import pagination, serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.model_names import DEFAULT_MODEL
from web.auth.roles import Role
from web.data.serializers import ErrorSerializer
from web.errors import Forbidden, NotFound, ValidationFailed
from web.registry import selectors, services
from web.registry.models import AliasName
from web.registry.names import resolve_model
from web.registry.serializers import (
    AliasMoveSerializer,
    AliasOverviewSerializer,
    AuditEventSerializer,
    DeleteQuerySerializer,
    ModelVersionDetailSerializer,
    ModelVersionSerializer,
    ReasonSerializer,
    RollbackSerializer,
)

ADMIN_ONLY_ALIASES = {AliasName.CHAMPION, AliasName.PREVIOUS}


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


BAD_INPUT = {400: _error("validation_error or invalid_json")}
NOT_FOUND = {404: _error("not_found: no such model name, or no such version of it")}
OVERVIEW = AliasOverviewSerializer
NO_MODEL = {404: _error("not_found: no such model name")}
BAD_CURSOR = {404: _error("not_found: the cursor is invalid, or no such model name")}
OUT_OF_SCOPE = {403: _error("forbidden: this token may not use this model name")}
ALIAS_PARAMETER = OpenApiParameter(
    "alias", str, OpenApiParameter.PATH, enum=AliasName.values, description="The alias"
)
CONFLICT = {409: _error("conflict: expected_version no longer matches, or the state forbids it")}


def actor_of(request: Request) -> services.Actor:
    """The audit's actor: the authenticated token's name, else `anonymous`."""
    return services.Actor(
        name=getattr(request, "actor", None) or "anonymous",
        request_id=getattr(request, "request_id", None),
    )


def require_admin(request: Request, what: str) -> None:
    """403 unless the caller's token has the admin role (set by web.auth's middleware)."""
    role = getattr(request, "role", None)
    if role is None or role < Role.ADMIN:
        held = f"; this token has {role.label}" if role is not None else ""
        raise Forbidden(f"{what} needs the admin role{held}.")


class NewestFirst(pagination.CursorPagination):
    """Cursor pages; a `page_size` that is not a whole number from 1 to 500 is a 400."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationFailed(
                fields={
                    self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size}."]
                }
            )
        return int(raw)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters


def query_filters(serializer_class: type[serializers.Serializer], request: Request) -> Any:
    """Validate query parameters (a blank value is an error, not a missing one)."""
    filters = serializer_class(data=dict(request.query_params.items()))
    filters.is_valid(raise_exception=True)
    return filters.validated_data


def model_of(request: Request, kwargs: dict[str, Any]) -> str:
    """The model the route names (`default` on today's routes), checked."""
    return resolve_model(request, kwargs.get("name", DEFAULT_MODEL))


class RunsNewestFirst(NewestFirst):
    ordering = ("-created_at", "-id")


class VersionsNewestFirst(NewestFirst):
    ordering = ("-created_at", "-version")


class AuditNewestFirst(NewestFirst):
    ordering = ("-id",)


class VersionFilters(serializers.Serializer):
    alias = serializers.ChoiceField(choices=AliasName.values, required=False)
    deleted = serializers.ChoiceField(choices=["false", "true", "all"], default="false")
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


@extend_schema(
    summary="List model versions, newest first",
    parameters=[VersionFilters],
    responses={
        200: ModelVersionSerializer(many=True),
        **BAD_INPUT,
        **OUT_OF_SCOPE,
        **BAD_CURSOR,
    },
)
class ModelVersionList(ListAPIView):
    serializer_class = ModelVersionSerializer
    pagination_class = VersionsNewestFirst

    def get_queryset(self) -> Any:
        model = model_of(self.request, self.kwargs)
        given = query_filters(VersionFilters, self.request)
        deleted = {"false": False, "true": True, "all": None}[given["deleted"]]
        return selectors.versions(
            model=model,
            alias=given.get("alias"),
            deleted=deleted,
            created_after=given.get("created_after"),
            created_before=given.get("created_before"),
        )


class ModelVersionDetail(APIView):
    @extend_schema(
        summary="One version: metrics per label, gate report, lineage, aliases",
        responses={200: ModelVersionDetailSerializer, **OUT_OF_SCOPE, **NOT_FOUND},
    )
    def get(self, request: Request, version: str, **kwargs: str) -> Response:
        model = model_of(request, kwargs)
        found = selectors.versions(model=model, deleted=None).filter(version=version).first()
        if found is None:
            raise NotFound(f"No model version {version!r} of model {model!r}.")
        return Response(ModelVersionDetailSerializer(found).data)

    @extend_schema(
        summary="Soft-delete a version (restorable)",
        parameters=[DeleteQuerySerializer],
        responses={204: None, **BAD_INPUT, **OUT_OF_SCOPE, **NOT_FOUND, **CONFLICT},
    )
    def delete(self, request: Request, version: str, **kwargs: str) -> Response:
        model = model_of(request, kwargs)
        reason = query_filters(DeleteQuerySerializer, request).get("reason", "")
        services.soft_delete_version(
            version=version, actor=actor_of(request), reason=reason, model=model
        )
        return Response(status=204)


class ModelVersionRestore(APIView):
    @extend_schema(
        summary="Undo a soft delete",
        request=ReasonSerializer,
        responses={
            200: ModelVersionDetailSerializer,
            **BAD_INPUT,
            **OUT_OF_SCOPE,
            **NOT_FOUND,
            **CONFLICT,
        },
    )
    def post(self, request: Request, version: str, **kwargs: str) -> Response:
        model = model_of(request, kwargs)
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.restore_version(
            version=version,
            actor=actor_of(request),
            reason=body.validated_data["reason"],
            model=model,
        )
        restored = selectors.versions(model=model, deleted=None).get(version=version)
        return Response(ModelVersionDetailSerializer(restored).data)


class AliasList(APIView):
    @extend_schema(
        summary="What should be served (aliases) and what each replica actually serves",
        responses={
            200: OpenApiResponse(OVERVIEW, description="Desired and loaded versions"),
            **OUT_OF_SCOPE,
            **NO_MODEL,
        },
    )
    def get(self, request: Request, **kwargs: str) -> Response:
        return Response(selectors.alias_overview(model_of(request, kwargs)))


class AliasDetail(APIView):
    @extend_schema(
        summary="Move an alias (champion moves pass the promotion gate)",
        parameters=[ALIAS_PARAMETER],
        request=AliasMoveSerializer,
        responses={
            200: OpenApiResponse(OVERVIEW, description="The aliases after the move"),
            **BAD_INPUT,
            403: _error(
                "forbidden: champion, previous and force need the admin role; or this token "
                "may not use this model name"
            ),
            **NOT_FOUND,
            **CONFLICT,
            422: _error("gate_failed: the gate refuses this champion (body has `report`)"),
        },
    )
    def put(self, request: Request, alias: str, **kwargs: str) -> Response:
        model = model_of(request, kwargs)
        body = AliasMoveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        given = body.validated_data
        if alias in ADMIN_ONLY_ALIASES:
            require_admin(request, f"Moving {alias}")
        if given["force"]:
            require_admin(request, "force: true")
        services.move_alias(
            alias=alias,
            version=given["version"],
            reason=given["reason"],
            actor=actor_of(request),
            expected_version=given.get("expected_version", services.UNSET),
            force=given["force"],
            model=model,
        )
        return Response(selectors.alias_overview(model))


class ChampionRollback(APIView):
    @extend_schema(
        summary="Roll back: champion and previous swap",
        request=RollbackSerializer,
        responses={
            200: OpenApiResponse(OVERVIEW, description="The aliases after the rollback"),
            **BAD_INPUT,
            **OUT_OF_SCOPE,
            **NO_MODEL,
            **CONFLICT,
        },
    )
    def post(self, request: Request, **kwargs: str) -> Response:
        model = model_of(request, kwargs)
        body = RollbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        given = body.validated_data
        services.rollback_champion(
            reason=given["reason"],
            actor=actor_of(request),
            expected_version=given.get("expected_version", services.UNSET),
            model=model,
        )
        return Response(selectors.alias_overview(model))


@extend_schema(
    summary="What an alias named when: its changes, newest first",
    parameters=[ALIAS_PARAMETER],
    responses={
        200: AuditEventSerializer(many=True),
        **BAD_INPUT,
        **OUT_OF_SCOPE,
        **BAD_CURSOR,
    },
)
class AliasHistory(ListAPIView):
    serializer_class = AuditEventSerializer
    pagination_class = AuditNewestFirst

    def get_queryset(self) -> Any:
        model = model_of(self.request, self.kwargs)
        return selectors.alias_history(self.kwargs["alias"], model)
