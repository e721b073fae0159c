"""List filters whose every accepted value an index can serve."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, filters

MIN_SEARCH_TERM_CHARS = 3
SEARCH_PATTERN = rf"^\s*(\S{{{MIN_SEARCH_TERM_CHARS},}}\s*)*$"  # runs of 3+ non-spaces
SEARCH_DESCRIPTION = (
    "Rows whose text contains every whitespace-separated term (case-insensitive substring); "
    f"each term at least {MIN_SEARCH_TERM_CHARS} characters."
)
SEARCH_PARAMETER: dict[str, Any] = {
    "name": "search",
    "in": "query",
    "required": False,
    "description": SEARCH_DESCRIPTION,
    "schema": {"type": "string", "pattern": SEARCH_PATTERN},
}


class TrigramSearchFilter(filters.SearchFilter):
    """`?search=`: case-insensitive substring match (icontains), served by the trigram index.

    A trigram index can only narrow a search by terms of three or more characters; a shorter
    term would read the whole table, so it is refused instead of answered slowly.
    """

    def get_search_terms(self, request: Any) -> list[str]:
        # Terms are separated by whitespace only (not DRF's commas and quotes), so that the
        # rule below is the pattern the OpenAPI schema declares.
        terms = request.query_params.get(self.search_param, "").split()
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


class RefuseNulInQuery(filters.BaseFilterBackend):
    """A NUL character (%00) in a query parameter gets a 400: PostgreSQL text cannot hold one."""

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        bad = sorted({name for name, value in request.query_params.items() if "\x00" in value})
        if bad:
            raise exceptions.ValidationError(
                {name: ["Null characters are not allowed."] for name in bad}
            )
        return queryset
