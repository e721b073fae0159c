"""The registry in Django's admin: model names, runs, versions, aliases and the audit trail.

History is read-only here (no add, change or delete of names, runs, versions or audit rows).
Alias moves, rollback, soft delete and restore are admin actions that call the same services as
the API, so they pass the gate, write their audit row and refuse a stale state the same way; the
actor is `admin:<username>`. Each acts on the model name of the row it was run on (a version's
own name, an alias's own name). They need the model's change permission (view permission only
shows the lists), and forcing a champion past the gate needs a superuser.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import QuerySet
from django.http import HttpRequest

from web.errors import ServiceError
from web.registry import services
from web.registry.models import (
    Alias,
    AliasName,
    AuditEvent,
    ModelVersion,
    RegisteredModel,
    TrainingRun,
)


class ReasonActionForm(ActionForm):
    reason = forms.CharField(
        required=False, max_length=1000, label="Reason", help_text="Goes into the audit trail"
    )
    force = forms.BooleanField(required=False, label="Force past the gate (superusers)")


def actor_of(request: HttpRequest) -> services.Actor:
    return services.Actor(
        name=f"admin:{request.user.get_username()}", request_id=getattr(request, "request_id", None)
    )


def reason_of(request: HttpRequest) -> str:
    return request.POST.get("reason", "").strip() or "(no reason given in the admin)"


def run_service(modeladmin: admin.ModelAdmin, request: HttpRequest, done: str, call: Any) -> None:
    """Call a service; show its refusal (409, 422, 404) as the admin's error message."""
    try:
        call()
    except ServiceError as error:
        modeladmin.message_user(
            request, f"Refused ({error.status}): {error.detail}", level=messages.ERROR
        )
    else:
        modeladmin.message_user(request, done, level=messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """History: visible, never edited here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RegistryActionsAdmin(ReadOnlyAdmin):
    """Read-only rows whose list offers actions to users with the model's change permission.

    Django offers an action with `permissions=["change"]` when `has_change_permission(request)`
    holds: on the list (no object) that is the user's own permission; one row's form stays
    read-only for everyone, superusers included.
    """

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and admin.ModelAdmin.has_change_permission(self, request)


def _macro_f1(metrics: dict[str, Any] | None) -> str:
    value = (metrics or {}).get("macro_f1")
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _accuracy(metrics: dict[str, Any] | None) -> str:
    value = (metrics or {}).get("accuracy")
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


@admin.register(RegisteredModel)
class RegisteredModelAdmin(ReadOnlyAdmin):
    """The names: created by an editor's first rows under them, never here."""

    list_display = ["name", "created_at", "created_by"]
    search_fields = ["name"]


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "model",
        "status",
        "created_at",
        "finished_at",
        "rows",
        "accuracy",
        "macro_f1",
        "version",
        "promoted",
        "requested_by",
    ]
    list_filter = ["model", "status", "promoted"]
    search_fields = ["id", "requested_by", "request_id"]

    @admin.display(description="accuracy")
    def accuracy(self, run: TrainingRun) -> str:
        return _accuracy(run.metrics)

    @admin.display(description="macro-F1")
    def macro_f1(self, run: TrainingRun) -> str:
        return _macro_f1(run.metrics)


@admin.register(ModelVersion)
class ModelVersionAdmin(RegistryActionsAdmin):
    list_display = [
        "version",
        "model",
        "created_at",
        "rows",
        "accuracy",
        "macro_f1",
        "alias_names",
        "gate_decision",
        "deleted_at",
    ]
    list_filter = ["model", ("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["version"]
    action_form = ReasonActionForm
    actions = ["make_champion", "make_challenger", "soft_delete", "restore"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelVersion]:
        return super().get_queryset(request).prefetch_related("aliases")

    @admin.display(description="accuracy")
    def accuracy(self, version: ModelVersion) -> str:
        return _accuracy(version.metrics)

    @admin.display(description="macro-F1")
    def macro_f1(self, version: ModelVersion) -> str:
        return _macro_f1(version.metrics)

    @admin.display(description="aliases")
    def alias_names(self, version: ModelVersion) -> str:
        return ", ".join(sorted(alias.name for alias in version.aliases.all())) or "-"

    @admin.display(description="gate")
    def gate_decision(self, version: ModelVersion) -> str:
        return str((version.gate or {}).get("decision", "-"))

    def _move(self, request: HttpRequest, queryset: QuerySet[ModelVersion], alias: str) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version.", level=messages.ERROR)
            return
        chosen = queryset.get()
        version = chosen.version
        force = request.POST.get("force") == "on"
        if force and not request.user.is_superuser:
            self.message_user(
                request,
                "Refused: only a superuser may force a version past the gate.",
                level=messages.ERROR,
            )
            return
        run_service(
            self,
            request,
            f"{chosen.model}'s {alias} is now {version}.",
            lambda: services.move_alias(
                alias=alias,
                version=version,
                reason=reason_of(request),
                actor=actor_of(request),
                force=force,
                model=chosen.model,
            ),
        )

    @admin.action(
        description="Make the selected version the champion (gate applies)", permissions=["change"]
    )
    def make_champion(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        self._move(request, queryset, AliasName.CHAMPION)

    @admin.action(description="Make the selected version the challenger", permissions=["change"])
    def make_challenger(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        self._move(request, queryset, AliasName.CHALLENGER)

    @admin.action(
        description="Soft-delete the selected versions (restorable)", permissions=["change"]
    )
    def soft_delete(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for found in queryset:
            run_service(
                self,
                request,
                f"{found.version} deleted.",
                lambda v=found.version, m=found.model: services.soft_delete_version(
                    version=v, reason=reason_of(request), actor=actor_of(request), model=m
                ),
            )

    @admin.action(description="Restore the selected deleted versions", permissions=["change"])
    def restore(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for found in queryset:
            run_service(
                self,
                request,
                f"{found.version} restored.",
                lambda v=found.version, m=found.model: services.restore_version(
                    version=v, reason=reason_of(request), actor=actor_of(request), model=m
                ),
            )


@admin.register(Alias)
class AliasAdmin(RegistryActionsAdmin):
    list_display = ["model", "name", "version", "updated_by", "updated_at"]
    list_filter = ["model", "name"]
    action_form = ReasonActionForm
    actions = ["rollback_champion"]

    @admin.action(
        description="Roll back the selected aliases' models: champion and previous swap",
        permissions=["change"],
    )
    def rollback_champion(self, request: HttpRequest, queryset: QuerySet[Alias]) -> None:
        models = sorted(set(queryset.values_list("model", flat=True)))
        for model in models:
            run_service(
                self,
                request,
                f"Rolled back {model}: the previous version is the champion again.",
                lambda m=model: services.rollback_champion(
                    reason=reason_of(request), actor=actor_of(request), model=m
                ),
            )


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "at",
        "model",
        "actor",
        "action",
        "target",
        "before",
        "after",
        "reason",
        "request_id",
    ]
    list_filter = ["model", "action"]
    search_fields = ["actor", "target", "reason"]
