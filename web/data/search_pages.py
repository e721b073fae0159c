"""A search's page while no import waits: a common word's page walked in the page's order, bounded.

A page of a common word is cheapest read by walking the ordering's own index and testing each
row until the page is full (a few hundred rows for a word in one text of four); a rare word's
from the trigram index (every match, then sorted). PostgreSQL would choose between the two from
its statistics on UPPER(text) (migration 0008), but it assumes a word is spread over the
table: a word found only in the newest rows (one import of a new vocabulary) would be walked to
from the oldest row, seconds at two million rows. So the walk is bounded here: at most
WALK_ROWS rows in the page's order, and if they do not fill the page, the trigram index answers
instead. Either way the page holds the same rows in the same order.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import QuerySet

from web.data.filters import containing_every_term

# Rows a walk may read before the trigram index answers instead: ~20 ms on a quiet core.
WALK_ROWS = 20_000
TEXT_STATISTICS = "data_text_upper_stats"  # migration 0008
# The share of the texts in the statistics' histogram (a sample of 1 000) holding every term:
# the planner's own estimate of a LIKE, computed where the histogram is, without its rows.
SHARE_SQL = """
SELECT count(*) FILTER (WHERE bound LIKE ALL (SELECT UPPER(p) FROM unnest(%s::text[]) AS p)),
       count(*)
FROM pg_stats_ext_exprs, unnest(histogram_bounds::text::text[]) AS bound
WHERE statistics_name = %s
"""
MIN_SAMPLE = 100  # texts: fewer, and the share says nothing (a table never analyzed)
LIKE_SQL = 'UPPER("data"."text"::text) LIKE UPPER(%s)'


def search_page(queryset: QuerySet[Any], terms: list[str], *, limit: int) -> list[Any]:
    """The first `limit` rows of `queryset` (filtered, ordered, after its cursor) with every term.

    Every row is in the trigram index (no import waits: the caller checked).
    """
    queryset = queryset.filter(search_indexed=True)
    # A sample of 1 000 texts holds a word of one text in 225 ("kernel") 4 times, but only
    # twice or less one time in five: a walk is tried when it should find a quarter of the
    # page, which costs a word that is rarer than its sample says one bounded walk (~20 ms).
    if share_matching(terms) * WALK_ROWS * 4 >= limit:
        rows = walked_matches(queryset, terms, limit=limit)
        if len(rows) == limit:
            return rows
    return gathered_matches(queryset, terms, limit=limit)


def share_matching(terms: list[str]) -> float:
    """The share of rows holding every term, from the statistics' sample of texts.

    0 without a sample (a table never analyzed, or a role that does not own the table, which
    PostgreSQL shows no statistics): every search is then gathered, as before the walk.
    """
    patterns = [f"%{connection.ops.prep_for_like_query(term)}%" for term in terms]
    with connection.cursor() as cursor:
        cursor.execute(SHARE_SQL, [patterns, TEXT_STATISTICS])
        matched, sampled = cursor.fetchone()
    return matched / sampled if sampled >= MIN_SAMPLE else 0.0


def walked_matches(queryset: QuerySet[Any], terms: list[str], *, limit: int) -> list[Any]:
    """The matches among the first WALK_ROWS rows of `queryset`, in its order, at most `limit`.

    They are the first `limit` matches of all when there are `limit` of them.
    """
    walk_sql, walk_params = queryset[:WALK_ROWS].query.sql_with_params()
    tests = " AND ".join([LIKE_SQL] * len(terms))
    order = ", ".join(_order_sql(field) for field in queryset.query.order_by)
    # The walk named "data", so that the outer query's column references read it.
    sql = f'SELECT * FROM ({walk_sql}) AS "data" WHERE {tests} ORDER BY {order} LIMIT %s'
    patterns = [f"%{connection.ops.prep_for_like_query(term)}%" for term in terms]
    return list(queryset.model.objects.raw(sql, [*walk_params, *patterns, limit]))


def gathered_matches(queryset: QuerySet[Any], terms: list[str], *, limit: int) -> list[Any]:
    """Every match of `queryset` gathered first (the trigram index's), then the page sorted.

    Gathered in a MATERIALIZED subquery, which PostgreSQL plans without the page's order: it
    cannot turn it into a walk of that order, however common the statistics say the word is.
    """
    matches_sql, params = (
        queryset.filter(containing_every_term(terms)).order_by().query.sql_with_params()
    )
    order = ", ".join(_order_sql(field) for field in queryset.query.order_by)
    sql = (
        f"WITH matches AS MATERIALIZED ({matches_sql}) "
        f'SELECT * FROM matches AS "data" ORDER BY {order} LIMIT %s'
    )
    return list(queryset.model.objects.raw(sql, [*params, limit]))


def _order_sql(field: str) -> str:
    name = field.lstrip("-")
    if not name.replace("_", "").isalpha():  # order_by() of pagination.ordered_by only
        raise ValueError(f"not an ordering field: {field}")
    return f'"data"."{name}"' + (" DESC" if field.startswith("-") else " ASC")
