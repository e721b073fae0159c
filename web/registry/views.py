"""The registry's HTTP API: thin DRF views over selectors (reads) and services (changes).

The actor and request id come from the authentication and request-id middlewares
(`request.actor`, `request.request_id`); route roles are checked by the authentication
middleware, and the admin-only parts of an editor route (champion/previous moves, `force`) here.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import pagination, serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from web.auth.roles import Role
from web.data.serializers import ErrorSerializer
from web.errors import Forbidden, NotFound, ValidationFailed, json_errors
from web.proxy import views as proxy
from web.registry import selectors, services
from web.registry.models import AliasName, TrainingRun
from web.registry.serializers import (
    AliasMoveSerializer,
    AliasOverviewSerializer,
    AuditEventSerializer,
    DeleteQuerySerializer,
    ModelVersionDetailSerializer,
    ModelVersionSerializer,
    ReasonSerializer,
    RollbackSerializer,
    TrainingRunSerializer,
)

ADMIN_ONLY_ALIASES = {AliasName.CHAMPION, AliasName.PREVIOUS}


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


BAD_INPUT = {400: _error("validation_error or invalid_json")}
NOT_FOUND = {404: _error("not_found: no such version")}
OVERVIEW = AliasOverviewSerializer
BAD_CURSOR = {404: _error("not_found: the cursor is invalid")}
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


class RunsNewestFirst(NewestFirst):
    ordering = ("-created_at", "-id")


class VersionsNewestFirst(NewestFirst):
    ordering = ("-created_at", "-version")


class AuditNewestFirst(NewestFirst):
    ordering = ("-id",)


class TrainingRunList(ListAPIView):
    """GET /api/train/: every training run, newest first, from PostgreSQL."""

    serializer_class = TrainingRunSerializer
    pagination_class = RunsNewestFirst
    queryset = TrainingRun.objects.all()


_runs_list = sync_to_async(TrainingRunList.as_view())


@csrf_exempt
@json_errors("GET", "POST")
async def train_collection(request: HttpRequest) -> HttpResponse:
    """/api/train/: GET lists the runs (a DRF view), POST starts a training (the async view)."""
    if request.method == "GET":
        response: HttpResponse = await _runs_list(request)
        return response
    return await proxy.start_training(request)


class VersionFilters(serializers.Serializer):
    alias = serializers.ChoiceField(choices=AliasName.values, required=False)
    deleted = serializers.ChoiceField(choices=["false", "true", "all"], default="false")
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


@extend_schema(
    summary="List model versions, newest first",
    parameters=[VersionFilters],
    responses={200: ModelVersionSerializer(many=True), **BAD_INPUT, **BAD_CURSOR},
)
class ModelVersionList(ListAPIView):
    serializer_class = ModelVersionSerializer
    pagination_class = VersionsNewestFirst

    def get_queryset(self) -> Any:
        given = query_filters(VersionFilters, self.request)
        deleted = {"false": False, "true": True, "all": None}[given["deleted"]]
        return selectors.versions(
            alias=given.get("alias"),
            deleted=deleted,
            created_after=given.get("created_after"),
            created_before=given.get("created_before"),
        )


class ModelVersionDetail(APIView):
    @extend_schema(
        summary="One version: metrics per label, gate report, lineage, aliases",
        responses={200: ModelVersionDetailSerializer, **NOT_FOUND},
    )
    def get(self, request: Request, version: str) -> Response:
        found = selectors.versions(deleted=None).filter(version=version).first()
        if found is None:
            raise NotFound(f"No model version {version!r}.")
        return Response(ModelVersionDetailSerializer(found).data)

    @extend_schema(
        summary="Soft-delete a version (restorable)",
        parameters=[DeleteQuerySerializer],
        responses={204: None, **BAD_INPUT, **NOT_FOUND, **CONFLICT},
    )
    def delete(self, request: Request, version: str) -> Response:
        reason = query_filters(DeleteQuerySerializer, request).get("reason", "")
        services.soft_delete_version(version=version, actor=actor_of(request), reason=reason)
        return Response(status=204)


class ModelVersionRestore(APIView):
    @extend_schema(
        summary="Undo a soft delete",
        request=ReasonSerializer,
        responses={200: ModelVersionDetailSerializer, **BAD_INPUT, **NOT_FOUND, **CONFLICT},
    )
    def post(self, request: Request, version: str) -> Response:
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.restore_version(
            version=version, actor=actor_of(request), reason=body.validated_data["reason"]
        )
        restored = selectors.versions(deleted=None).get(version=version)
        return Response(ModelVersionDetailSerializer(restored).data)


class AliasList(APIView):
    @extend_schema(
        summary="What should be served (aliases) and what each replica actually serves",
        responses={200: OpenApiResponse(OVERVIEW, description="Desired and loaded versions")},
    )
    def get(self, request: Request) -> Response:
        return Response(selectors.alias_overview())


class AliasDetail(APIView):
    @extend_schema(
        summary="Move an alias (champion moves pass the promotion gate)",
        parameters=[ALIAS_PARAMETER],
        request=AliasMoveSerializer,
        responses={
            200: OpenApiResponse(OVERVIEW, description="The aliases after the move"),
            **BAD_INPUT,
            403: _error("forbidden: champion, previous and force need the admin role"),
            **NOT_FOUND,
            **CONFLICT,
            422: _error("gate_failed: the gate refuses this champion (body has `report`)"),
        },
    )
    def put(self, request: Request, alias: str) -> Response:
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
        )
        return Response(selectors.alias_overview())


class ChampionRollback(APIView):
    @extend_schema(
        summary="Roll back: champion and previous swap",
        request=RollbackSerializer,
        responses={
            200: OpenApiResponse(OVERVIEW, description="The aliases after the rollback"),
            **BAD_INPUT,
            **CONFLICT,
        },
    )
    def post(self, request: Request) -> Response:
        body = RollbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        given = body.validated_data
        services.rollback_champion(
            reason=given["reason"],
            actor=actor_of(request),
            expected_version=given.get("expected_version", services.UNSET),
        )
        return Response(selectors.alias_overview())


@extend_schema(
    summary="What an alias named when: its changes, newest first",
    parameters=[ALIAS_PARAMETER],
    responses={200: AuditEventSerializer(many=True), **BAD_INPUT, **BAD_CURSOR},
)
class AliasHistory(ListAPIView):
    serializer_class = AuditEventSerializer
    pagination_class = AuditNewestFirst

    def get_queryset(self) -> Any:
        return selectors.alias_history(self.kwargs["alias"])


class AuditFilters(serializers.Serializer):
    actor = serializers.CharField(required=False, max_length=200)
    action = serializers.CharField(required=False, max_length=64)
    target = serializers.CharField(required=False, max_length=200)


@extend_schema(
    summary="The audit trail: who changed what, when, why",
    parameters=[AuditFilters],
    responses={200: AuditEventSerializer(many=True), **BAD_INPUT, **BAD_CURSOR},
)
class AuditList(ListAPIView):
    serializer_class = AuditEventSerializer
    pagination_class = AuditNewestFirst

    def get_queryset(self) -> Any:
        return selectors.audit_events(**query_filters(AuditFilters, self.request))
