"""Keyset pagination: every page costs one index range scan, however deep.

A cursor holds the ordering and the (field, id) key of the last row served; the next page asks
for rows after that key (`(field, id) > (value, id)`), which an index on (field, id) answers
without counting or skipping rows. Ties in `field` are broken by id, in the same direction.
No list counts the table: an unfiltered list reports the planner's estimate (exact while the
table is small), a filtered one reports a count only when everything fits on its first page.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from rest_framework import exceptions, pagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from core.model_names import DEFAULT_MODEL
from web.data.filters import backlog_waiting_for
from web.data.models import Data
from web.data.search_pages import search_page
from web.edge.json_parser import load_json

ORDERING_FIELDS = ("id", "label", "created_at", "updated_at")
DEFAULT_ORDERING = "id"
EXACT_COUNT_BELOW = 10_000  # rows: counting a table this small costs less than a millisecond
FILTER_PARAMS = ("label", "search")


def _invalid(param: str, message: str) -> exceptions.ValidationError:
    return exceptions.ValidationError({param: [message]})


class KeysetPagination(pagination.BasePagination):
    """`?cursor=` pages in any allowed `?ordering=`; `?page_size=` as before, capped."""

    page_size = settings.PAGE_SIZE_DEFAULT
    max_page_size = settings.PAGE_SIZE_MAX

    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any]:
        if "page" in request.query_params:
            raise _invalid("page", "Page numbers are not supported: follow `next` (a cursor).")
        self.request = request
        self.ordering = requested_ordering(request)
        field = self.ordering.lstrip("-")
        descending = self.ordering.startswith("-")
        size = _page_size(request, self.page_size, self.max_page_size)
        cursor = request.query_params.get("cursor")
        key, backwards = _decode_cursor(cursor, self.ordering) if cursor else (None, False)
        ascending = descending == backwards  # walking a descending order backwards is ascending
        queryset = queryset.order_by(*ordered_by(field, ascending=ascending))
        if key is not None:
            queryset = queryset.filter(_after(field, key, ascending=ascending))
        if getattr(view, "search_backlog_waiting", False):  # set by the search filter
            rows = first_rows_with_backlog(
                queryset, field=field, ascending=ascending, limit=size + 1
            )
        elif terms := getattr(view, "deferred_search_terms", None):  # so is this
            rows = search_page(queryset, terms, limit=size + 1)
        elif reads_by_label(request, field):
            rows = first_rows_by_label(
                queryset, view, field=field, ascending=ascending, limit=size + 1
            )
        else:
            rows = list(queryset[: size + 1])
        more = len(rows) > size
        rows = rows[:size]
        if backwards:
            rows.reverse()
        more_after, more_before = (bool(cursor), more) if backwards else (more, bool(cursor))
        self.next_key = _key(rows[-1], field) if rows and more_after else None
        self.previous_key = _key(rows[0], field) if rows and more_before else None
        model = getattr(view, "listed_model", DEFAULT_MODEL)
        self.count = self._count(
            request, model, first_page=cursor is None, more=more, served=len(rows)
        )
        return rows

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "count": self.count[0],
                "count_is_estimate": self.count[1],
                "next": self._link(self.next_key, backwards=False),
                "previous": self._link(self.previous_key, backwards=True),
                "results": data,
            }
        )

    def _link(self, key: list[Any] | None, *, backwards: bool) -> str | None:
        if key is None:
            return None
        url = self.request.build_absolute_uri()
        token = _encode_cursor(self.ordering, key, backwards=backwards)
        return replace_query_param(url, "cursor", token)

    def _count(
        self, request: Request, model: str, *, first_page: bool, more: bool, served: int
    ) -> tuple[int | None, bool]:
        if first_page and not more:
            return served, False
        if any(request.query_params.get(name) for name in FILTER_PARAMS):
            return None, False
        estimate = estimated_rows(model)
        if estimate < EXACT_COUNT_BELOW:
            return Data.objects.filter(model=model).count(), False
        return estimate, True

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["count", "count_is_estimate", "next", "previous", "results"],
            "properties": {
                "count": {
                    "type": "integer",
                    "nullable": True,
                    "description": "Unfiltered lists: the number of the model's rows, exact "
                    f"below {EXACT_COUNT_BELOW} rows, else the planner's estimate "
                    "(pg_class.reltuples times the name's share in the column's statistics; see "
                    "count_is_estimate). Filtered lists: exact when every match "
                    "fits on the first page, else null (counting matches would cost a scan).",
                },
                "count_is_estimate": {"type": "boolean"},
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            ORDERING_PARAMETER,
            {
                "name": "cursor",
                "in": "query",
                "required": False,
                "description": "Opaque position from a previous page's `next` or `previous` "
                "link; valid with the same `ordering` only (404 otherwise, as for a page that "
                "does not exist).",
                "schema": {"type": "string"},
            },
            {
                "name": "page_size",
                "in": "query",
                "required": False,
                "description": f"Rows per page (default {self.page_size}, at most "
                f"{self.max_page_size}; larger values are capped).",
                "schema": {"type": "integer", "minimum": 1},
            },
        ]


def reads_by_label(request: Request, field: str) -> bool:
    """Whether a list (or export) is read through the label index: `?label=` or its ordering."""
    return field == "label" or bool(request.query_params.get("label"))


def first_rows_by_label(
    queryset: QuerySet[Any], view: Any, *, field: str, ascending: bool, limit: int
) -> list[Any]:
    """The first `limit` rows of a list filtered or ordered by label.

    The label index holds the rows in the trigram index only (web/data/models.py): the query
    says `search_indexed`, or PostgreSQL could not read it. While an import waits, its rows are
    read apart, from the backlog's own indexes.
    """
    if backlog_waiting_for(view):
        return first_rows_with_backlog(queryset, field=field, ascending=ascending, limit=limit)
    return list(queryset.filter(search_indexed=True)[:limit])


def first_rows_with_backlog(
    queryset: QuerySet[Any], *, field: str, ascending: bool, limit: int
) -> list[Any]:
    """The first `limit` rows of an ordered list while an import waits in the search backlog.

    Indexed rows come from the indexes of indexed rows (the trigram index for a search, the
    label index for a label); rows still in the backlog are read only up to the last indexed
    row of the page, when the indexed rows fill it: the backlog holds the newest rows, so in
    most orderings that bound leaves none of them to read, where reading every waiting row
    (~1 us each) would cost hundreds of ms after a big import.
    """
    indexed = list(queryset.filter(search_indexed=True)[:limit])
    waiting = queryset.filter(search_indexed=False)
    if len(indexed) == limit:
        last = indexed[-1]
        key = [last.id] if field == "id" else [getattr(last, field), last.id]
        waiting = waiting.filter(_compare(field, "<" if ascending else ">", key))
    waiting_ids = list(waiting.values_list("id", flat=True)[:limit])
    if not waiting_ids:
        return indexed
    ids = [row.id for row in indexed] + waiting_ids  # ordered by PostgreSQL, as every page is
    rows = queryset.model.objects.filter(id__in=ids).order_by(*queryset.query.order_by)
    return list(rows[:limit])


def estimated_rows(model: str) -> int:
    """The planner's estimate of `model`'s rows (its statistics of the column; no scan)."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) SELECT 1 FROM data WHERE model = %s", [model])
        (plan,) = cursor.fetchone()[0]
        return int(plan["Plan"]["Plan Rows"])


ORDERINGS = [f"{sign}{field}" for field in ORDERING_FIELDS for sign in ("", "-")]
ORDERING_DESCRIPTION = "One field, prefixed by '-' for descending order; ties are broken by id."
ORDERING_PARAMETER = {
    "name": "ordering",
    "in": "query",
    "required": False,
    "description": ORDERING_DESCRIPTION,
    "schema": {"type": "string", "enum": ORDERINGS, "default": DEFAULT_ORDERING},
}


def requested_ordering(request: Request) -> str:
    """The one `?ordering=` field (with its optional '-'), or a 400."""
    raw = request.query_params.get("ordering", DEFAULT_ORDERING)
    if raw not in ORDERINGS:
        raise _invalid("ordering", f"One of: {', '.join(ORDERINGS)}.")
    return raw


def _page_size(request: Request, default: int, maximum: int) -> int:
    raw = request.query_params.get("page_size")
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if size < 1:
        raise _invalid("page_size", "Must be a positive integer.")
    return min(size, maximum)


def ordered_by(field: str, *, ascending: bool) -> list[str]:
    """order_by() arguments for field, ties broken by id in the same direction."""
    sign = "" if ascending else "-"
    return [f"{sign}id"] if field == "id" else [f"{sign}{field}", f"{sign}id"]


def _after(field: str, key: list[Any], *, ascending: bool) -> RawSQL:
    return _compare(field, ">" if ascending else "<", key)


def _compare(field: str, op: str, key: list[Any]) -> RawSQL:
    # A row comparison: PostgreSQL walks the (field, id) index from the key, both directions.
    if field == "id":
        return RawSQL(f'"data"."id" {op} %s', [key[0]], output_field=BooleanField())
    sql = f'("data"."{field}", "data"."id") {op} (%s, %s)'
    return RawSQL(sql, key, output_field=BooleanField())


def _key(row: Any, field: str) -> list[Any]:
    if field == "id":
        return [row.id]
    value = getattr(row, field)
    return [value.isoformat() if isinstance(value, datetime) else value, row.id]


def _encode_cursor(ordering: str, key: list[Any], *, backwards: bool) -> str:
    raw = json.dumps({"o": ordering, "k": key, "b": backwards}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(token: str, ordering: str) -> tuple[list[Any], bool]:
    try:
        # Nested too deep (JsonTooDeep) is a ValueError: a cursor this API never gave out.
        raw = load_json(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key, backwards = raw["k"], raw["b"]
        if raw["o"] != ordering:
            raise exceptions.NotFound(f"Invalid cursor: it belongs to ordering={raw['o']}.")
        if not isinstance(backwards, bool) or not isinstance(key, list):
            raise TypeError
        return _typed_key(ordering.lstrip("-"), key), backwards
    except (ValueError, TypeError, KeyError, binascii.Error):
        # Like DRF's CursorPagination: a cursor names a page, and this page does not exist.
        raise exceptions.NotFound("Invalid cursor: not one this API gave out.") from None


def _typed_key(field: str, key: list[Any]) -> list[Any]:
    """The key with the column's Python types; anything the database could choke on is refused."""
    *value, row_id = key
    if type(row_id) is not int or not -(2**63) <= row_id < 2**63:
        raise TypeError
    if len(value) != (0 if field == "id" else 1):
        raise TypeError
    if field == "id":
        return [row_id]
    if not isinstance(value[0], str) or "\x00" in value[0]:
        raise TypeError
    value[0].encode()  # lone surrogates: UnicodeEncodeError, a ValueError
    if field == "label":
        return [value[0], row_id]
    moment = datetime.fromisoformat(value[0])
    if moment.tzinfo is None:
        raise TypeError
    return [moment, row_id]
