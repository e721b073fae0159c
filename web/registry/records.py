"""The registry's records, newest first: training runs (`/api/train/`) and the audit trail.

Both filter by `?model=` (checked like a path's name, web/registry/names.py) and show a token
limited to some model names only theirs. POST /api/train/ shares the runs' route: it checks the
name the body gives (its scope, that it exists) and starts the training (web/proxy/views.py).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView

from web.auth import scope
from web.errors import json_errors
from web.proxy import views as proxy
from web.registry import selectors
from web.registry.names import filtered_model, model_filter, resolve_model
from web.registry.serializers import AuditEventSerializer, TrainingRunSerializer
from web.registry.views import (
    BAD_CURSOR,
    BAD_INPUT,
    OUT_OF_SCOPE,
    AuditNewestFirst,
    RunsNewestFirst,
    query_filters,
)


class RunFilters(serializers.Serializer):
    model = model_filter()


class TrainingRunList(ListAPIView):
    """GET /api/train/: training runs, newest first, from PostgreSQL (`?model=`: one name's)."""

    serializer_class = TrainingRunSerializer
    pagination_class = RunsNewestFirst

    def get_queryset(self) -> Any:
        given = query_filters(RunFilters, self.request)
        model = filtered_model(self.request, given.get("model"))
        return selectors.runs(model=model, allowed=scope.allowed_models(self.request))


_runs_list = sync_to_async(TrainingRunList.as_view())


@csrf_exempt
@json_errors("GET", "POST")
async def train_collection(request: HttpRequest) -> HttpResponse:
    """/api/train/: GET lists the runs (a DRF view), POST starts a training (the async view)."""
    if request.method == "GET":
        response: HttpResponse = await _runs_list(request)
        return response
    model = proxy.training_model(request)
    await sync_to_async(resolve_model)(request, model)
    return await proxy.start_training(request, model)


class AuditFilters(serializers.Serializer):
    actor = serializers.CharField(required=False, max_length=200)
    action = serializers.CharField(required=False, max_length=64)
    target = serializers.CharField(required=False, max_length=200)
    model = model_filter()


@extend_schema(
    summary="The audit trail: who changed what, when, why",
    description="A token limited to some model names sees only their events.",
    parameters=[AuditFilters],
    responses={
        200: AuditEventSerializer(many=True),
        **BAD_INPUT,
        **OUT_OF_SCOPE,
        **BAD_CURSOR,
    },
)
class AuditList(ListAPIView):
    serializer_class = AuditEventSerializer
    pagination_class = AuditNewestFirst

    def get_queryset(self) -> Any:
        given = query_filters(AuditFilters, self.request)
        given["model"] = filtered_model(self.request, given.get("model"))
        return selectors.audit_events(**given, allowed=scope.allowed_models(self.request))
