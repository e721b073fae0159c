"""A row's JSON is what DRF's own fields would write, through the shortcut that writes it."""

from __future__ import annotations

import datetime
from typing import Any

from django.utils import timezone
from rest_framework import serializers
from rest_framework.test import APIClient

from web.data.models import Data
from web.data.serializers import DataSerializer


class DrfFieldsSerializer(serializers.ModelSerializer):
    """The same fields, each written by DRF's own field classes."""

    class Meta:
        model = Data
        fields = ["id", "text", "label", "model", "created_at", "updated_at"]


def test_rows_are_written_as_drf_fields_write_them(api: APIClient, make_rows: Any) -> None:
    make_rows(('Zürich café ☕ "quoted"', "travel"), ("second row", "misc"))
    on_the_hour = datetime.datetime(2026, 12, 7, 11, 0, 0, tzinfo=datetime.UTC)  # no microseconds
    Data.objects.filter(text="second row").update(created_at=on_the_hour)
    rows = list(Data.objects.order_by("id"))

    listed = api.get("/api/data/").json()["results"]
    assert listed == DrfFieldsSerializer(rows, many=True).data
    assert listed[1]["created_at"] == "2026-12-07T11:00:00Z"
    assert api.get(f"/api/data/{rows[0].pk}/").json() == DrfFieldsSerializer(rows[0]).data

    with timezone.override("Asia/Kolkata"):  # another current time zone: its offset, as DRF
        ours = DataSerializer(rows, many=True).data
        assert ours == DrfFieldsSerializer(rows, many=True).data
    assert ours[1]["created_at"] == "2026-12-07T16:30:00+05:30"
