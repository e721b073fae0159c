"""The labelled rows in Django's admin (search uses the trigram index, no count of the table)."""

from __future__ import annotations

from django.contrib import admin

from web.data.models import Data


@admin.register(Data)
class DataAdmin(admin.ModelAdmin):
    list_display = ["id", "label", "text", "updated_at"]
    search_fields = ["text"]
    show_full_result_count = False  # a million rows: no second count(*) per page
