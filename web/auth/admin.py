"""API tokens in Django's admin: who holds which role and which model names; never a secret.

Read-only: tokens are issued, limited and revoked by the management commands (web/auth/tokens.py),
the one place that writes them, which shows a new secret once.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from web.auth.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "role", "models_shown", "status", "prefix", "created_at", "expires_at"]
    list_filter = ["role"]
    search_fields = ["name"]
    exclude = ["digest"]

    @admin.display(description="models")
    def models_shown(self, token: ApiToken) -> str:
        return token.models_shown

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
