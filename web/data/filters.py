"""List filters whose every accepted value an index can serve."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db.models import Q
from django_filters import rest_framework as django_filters
from rest_framework import exceptions, filters

from web.data.models import Data
from web.data.search_backlog import backlog_waiting

MIN_SEARCH_TERM_CHARS = 3
# Each term is one more substring test of every candidate row: a search takes at most this many.
MAX_SEARCH_TERMS: int = settings.SEARCH_MAX_TERMS
# Terms are separated by ASCII whitespace, spelled out so that the pattern means the same in
# Python and in the schema's (ECMAScript) regular expressions.
SPACE = "[ \t\n\r\f\v]"
TERM = rf"[^ \t\n\r\f\v]{{{MIN_SEARCH_TERM_CHARS},}}"
# One to MAX_SEARCH_TERMS terms (or none), written so that a term can only match one way.
SEARCH_PATTERN = rf"^{SPACE}*({TERM}({SPACE}+{TERM}){{0,{MAX_SEARCH_TERMS - 1}}})?{SPACE}*$"
SEARCH_DESCRIPTION = (
    "Rows whose text contains every whitespace-separated term (case-insensitive substring); "
    f"each term at least {MIN_SEARCH_TERM_CHARS} characters, at most {MAX_SEARCH_TERMS} terms."
)
SEARCH_PARAMETER: dict[str, Any] = {
    "name": "search",
    "in": "query",
    "required": False,
    "description": SEARCH_DESCRIPTION,
    "schema": {"type": "string", "pattern": SEARCH_PATTERN},
}


def backlog_waiting_for(view: Any) -> bool:
    """Whether an import's rows wait in the search backlog, asked once a request: the answer is
    kept on the view (`search_backlog_waiting`), where the search filter, the pagination and
    the export read it."""
    found: bool | None = getattr(view, "search_backlog_waiting", None)
    if found is None:
        found = view.search_backlog_waiting = backlog_waiting()
    return found


class TrigramSearchFilter(filters.SearchFilter):
    """`?search=`: case-insensitive substring match (icontains), served by the trigram index.

    A trigram index can only narrow a search by terms of three or more characters; a shorter
    term would read the whole table, so it is refused instead of answered slowly. Rows an
    import left in the search backlog (not in the trigram index yet) are matched too, while an
    import is recorded as waiting (`backlog_waiting_for`, asked once a request). A view that
    pages (`pages_searches`) gets the terms instead when none waits: its page is read by
    `web.data.search_pages.search_page`.
    """

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        terms = self.get_search_terms(request)
        if not terms:
            return queryset
        if backlog_waiting_for(view):
            return queryset.filter(matching_every_term(terms))
        if getattr(view, "pages_searches", False):  # web.data.search_pages reads the page
            view.deferred_search_terms = terms
            return queryset
        return queryset.filter(containing_every_term(terms), search_indexed=True)

    def get_search_terms(self, request: Any) -> list[str]:
        # Terms are separated by ASCII whitespace only (not DRF's commas and quotes), so that
        # the rule below is the pattern the OpenAPI schema declares.
        raw = request.query_params.get(self.search_param, "")
        terms = [term for term in re.split(SPACE, raw) if term]
        if len(terms) > MAX_SEARCH_TERMS:
            raise exceptions.ValidationError(
                {
                    "search": [
                        f"At most {MAX_SEARCH_TERMS} search terms (SEARCH_MAX_TERMS), "
                        f"got {len(terms)}."
                    ]
                }
            )
        short = [term for term in terms if len(term) < MIN_SEARCH_TERM_CHARS]
        if short:
            raise exceptions.ValidationError(
                {
                    "search": [
                        f"Each search term needs at least {MIN_SEARCH_TERM_CHARS} characters "
                        f"(got {', '.join(repr(t) for t in short)})."
                    ]
                }
            )
        return terms

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [SEARCH_PARAMETER]


def containing_every_term(terms: list[str]) -> Q:
    """Rows whose text contains every term, each term's test written once.

    Once, so that PostgreSQL estimates the matches from the statistics on UPPER(text)
    (migration 0008); the same test twice (as `matching_every_term` writes it) multiplies its
    estimate by itself, and every word looks rare. For export and the list's page
    (`web.data.search_pages`) while no import waits.
    """
    return Q(*(Q(text__icontains=term) for term in terms))


def matching_every_term(terms: list[str]) -> Q:
    """Rows whose text contains every term: the trigram index's rows or the backlog's.

    The terms are also required outside the OR, so every row is checked; inside it they are
    what lets PostgreSQL read the partial trigram index (its WHERE search_indexed is implied
    there), while the backlog's rows come from the partial backlog index: a BitmapOr of two
    small index scans. Written as (indexed AND terms) OR (NOT indexed AND terms), PostgreSQL
    would factor the terms out of the OR and could use neither partial index.
    """
    contains = containing_every_term(terms)
    return contains & ((Q(search_indexed=True) & contains) | Q(search_indexed=False))


class NulMatchesNothingMixin:
    """`label` or `search` with a NUL character matches no row: PostgreSQL text cannot hold one.

    Answered as an empty result before any filter sends the value to the database (which would
    refuse it) or django-filter's form refuses it.
    """

    request: Any

    def filter_queryset(self, queryset: Any) -> Any:
        if any("\x00" in self.request.query_params.get(name, "") for name in ("label", "search")):
            return queryset.filter(pk__isnull=True)  # empty, and still a query COPY can run
        return super().filter_queryset(queryset)  # type: ignore[misc]


class LabelFilter(django_filters.FilterSet):
    """`?label=`: the rows with exactly that label.

    Declared once: with `filterset_fields`, django-filter builds a new FilterSet class for every
    request (about a tenth of a millisecond of a one-row GET).
    """

    class Meta:
        model = Data
        fields = ["label"]
