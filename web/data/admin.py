"""The labelled rows in Django's admin (search uses the trigram index, no count of the table)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from web.data.models import Data
from web.registry.models import RegisteredModel


class ModelNameFilter(admin.SimpleListFilter):
    """By model name, the choices read from the registered names (not a DISTINCT of the rows)."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = RegisteredModel.objects.values_list("name", flat=True)
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Data]) -> QuerySet[Data]:
        return queryset.filter(model=self.value()) if self.value() else queryset


@admin.register(Data)
class DataAdmin(admin.ModelAdmin):
    list_display = ["id", "model", "label", "text", "updated_at"]
    list_filter = [ModelNameFilter]
    search_fields = ["text"]
    # Names are made by the API's writes (registered and announced there): rows added here go
    # to `default`, and a row keeps its name.
    readonly_fields = ["model"]
    show_full_result_count = False  # a million rows: no second count(*) per page
