"""POST /api/data/import and GET /api/data/export: all or nothing, same rules, round trips."""

from __future__ import annotations

import csv
import http.client
import io
import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.helpers import assert_error, bearer, wait_until
from tests.web.conftest import LIVE_IMPORT_MAX_BYTES, LiveWeb
from web.data.importing import BLOCK_ROWS
from web.data.models import Data

NDJSON, CSV = "application/x-ndjson", "text/csv"
AWKWARD_ROWS = [
    ("plain text", "plain"),
    ('quotes " and \'single\', commas, and a "quoted, part"', "quoting"),
    ("two\nlines and\r\nwindows ones\rand a bare CR", "newlines"),
    ("tabs\tand backslashes \\ \\n \\\\ and a \\t literal", "escapes"),
    ("unicode: naïve café — 漢字 🙂 and \x01 control \x1f chars", "unicode"),
    ("  leading and trailing spaces  ", "spaces"),
    ("\\.", "copy-end-marker"),
    ('"', "lone-quote"),
]


def ndjson(rows: list[tuple[str, str]]) -> bytes:
    """An NDJSON body as Python writes it."""
    lines = [json.dumps({"text": t, "label": label}, ensure_ascii=False) for t, label in rows]
    return ("\n".join(lines) + "\n").encode()


def csv_body(rows: list[tuple[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    return out.getvalue().encode()


def post_import(api: APIClient, body: bytes, content_type: str = NDJSON) -> Any:
    return api.generic("POST", "/api/data/import", body, content_type=content_type)


def test_ndjson_import_with_one_bad_line_in_the_middle_creates_nothing(api: APIClient) -> None:
    rows = [json.dumps({"text": f"row {i}", "label": "ok"}) for i in range(1, 1001)]
    rows[499] = json.dumps({"text": "   ", "label": "ok"})
    error = assert_error(post_import(api, "\n".join(rows).encode()), 400, "validation_error")
    assert error["lines"] == [{"line": 500, "reason": "text: This field may not be blank."}]
    assert "line 500" in error["detail"] and "nothing was imported" in error["detail"]
    assert Data.objects.count() == 0


def test_csv_import_names_bad_lines_by_their_first_physical_line(api: APIClient) -> None:
    body = b'text,label\n"a text\nover two lines",ok\n"fine",\n"x",ok,extra\nlast,ok\n'
    error = assert_error(post_import(api, body, CSV), 400, "validation_error")
    assert [(bad["line"], bad["reason"]) for bad in error["lines"]] == [
        (4, "label: This field may not be blank."),
        (5, "Expected 2 fields, got 3."),
    ]
    assert Data.objects.count() == 0


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"text": "", "label": "x"}, "text: This field may not be blank."),
        ({"text": 12, "label": "x"}, "text: Must be a string."),
        ({"text": "t", "label": True}, "label: Must be a string."),
        ({"text": "t"}, "label: This field is required."),
        ({"text": "t", "label": "l" * 101}, "label: Ensure this field has no more than 100"),
        ({"text": "t" * 100_001, "label": "x"}, "text: Ensure this field has no more than"),
        ({"text": "a\x00b", "label": "x"}, "text: Null characters and lone surrogates"),
        ({"text": "a\ud800b", "label": "x"}, "text: Null characters and lone surrogates"),
        ({"text": "t", "label": "x", "colour": "red"}, "colour: Unknown field."),
        (["t", "x"], 'Expected an object with "text" and "label".'),
    ],
)
def test_import_refuses_what_the_api_refuses_with_the_same_words(
    api: APIClient, row: Any, reason: str
) -> None:
    line = json.dumps(row).encode()  # ensure_ascii: the surrogate travels as \\ud800
    error = assert_error(post_import(api, b'{"text": "fine", "label": "ok"}\n' + line), 400)
    assert error["lines"][0]["line"] == 2 and error["lines"][0]["reason"].startswith(reason)
    if isinstance(row, dict):
        posted = api.generic("POST", "/api/data/", line, content_type="application/json")
        field, _, words = reason.partition(": ")
        assert assert_error(posted, 400)["fields"][field][0].startswith(words)
    assert Data.objects.count() == 0


def test_import_reports_at_most_100_bad_lines(api: APIClient) -> None:
    body = b"not json\n" * 500
    error = assert_error(post_import(api, body), 400, "validation_error")
    assert [bad["line"] for bad in error["lines"]] == list(range(1, 101))
    assert "reading stopped" in error["detail"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", NDJSON, 400),
        (b"text,label\n", CSV, 400),
        (b"label,txt\nx,y\n", CSV, 400),
        (b'{"text": "t", "label": "l"}', "application/json", 415),
        (b"t,l", "text/csv; charset=latin-1", 415),
        (b"\xff\xfe not utf-8\n", NDJSON, 400),
        (b"[" * 200_000 + b"\n", NDJSON, 400),
        (b'text,label\n"unterminated,x\n', CSV, 400),
    ],
)
def test_bad_import_bodies_get_4xx(
    api: APIClient, body: bytes, content_type: str, status: int
) -> None:
    assert_error(post_import(api, body, content_type), status)
    assert Data.objects.count() == 0


def test_import_over_the_size_limit_gets_413(api: APIClient, settings: Any) -> None:
    settings.IMPORT_MAX_BYTES = 1000
    body = ndjson([(f"row {i}", "ok") for i in range(100)])
    assert_error(post_import(api, body), 413, "payload_too_large")
    assert Data.objects.count() == 0


def test_import_adds_rows_and_answers_the_count(api: APIClient) -> None:
    response = post_import(api, csv_body(AWKWARD_ROWS), "text/csv; charset=utf-8")
    assert response.status_code == 201 and response.json() == {"created": len(AWKWARD_ROWS)}
    stored = list(Data.objects.order_by("id").values_list("text", "label"))
    assert stored == AWKWARD_ROWS


def test_import_over_several_copy_blocks_is_still_all_or_nothing(api: APIClient) -> None:
    count = BLOCK_ROWS * 2 + 1  # two full blocks written to the COPY, then a partial one
    rows = [(f"block row {i}", f"label{i % 3}") for i in range(count)]
    bad = ndjson(rows) + b'{"text": "late", "label": " "}\n'
    error = assert_error(post_import(api, bad), 400, "validation_error")
    assert error["lines"] == [{"line": count + 1, "reason": "label: This field may not be blank."}]
    assert Data.objects.count() == 0
    response = post_import(api, ndjson(rows))
    assert response.status_code == 201 and response.json() == {"created": count}
    stored = list(Data.objects.order_by("id").values_list("text", "label"))
    assert stored == rows


def test_lines_that_join_into_one_json_array_are_still_checked_one_per_line(
    api: APIClient,
) -> None:
    # Read as one array these are three objects of two fields for three lines, but line 1
    # holds two objects and lines 2-3 one between them: each line is refused on its own.
    body = b'{"text":"a","label":"b"},{"text":"c","label":"d"}\n{"text":[{}\n{}],"label":"x"}\n'
    error = assert_error(post_import(api, body), 400, "validation_error")
    assert [bad["line"] for bad in error["lines"]] == [1, 2, 3]
    assert Data.objects.count() == 0


def test_ndjson_with_crlf_spaces_and_blank_lines_imports_every_row_as_written(
    api: APIClient,
) -> None:
    body = (
        b'{"text": "one", "label": " a "}\r\n\n'
        b'  {"text":"two","label":"b"}  \n{"text":"3","label":"c"}'
    )
    started = timezone.now()
    response = api.generic("POST", "/api/data/import?model=crlf", body, content_type=NDJSON)
    assert response.status_code == 201 and response.json() == {"created": 3}
    stored = list(
        Data.objects.order_by("id").values_list(
            "text", "label", "model", "created_at", "updated_at", "search_indexed"
        )
    )
    assert [row[:3] for row in stored] == [
        ("one", "a", "crlf"),
        ("two", "b", "crlf"),
        ("3", "c", "crlf"),
    ]
    stamps = {row[3] for row in stored} | {row[4] for row in stored}
    assert len(stamps) == 1 and started <= stamps.pop() <= timezone.now()
    assert not any(row[5] for row in stored)  # waiting for the drain, as every import's rows


@pytest.mark.parametrize("content_type", [NDJSON, CSV])
def test_a_line_too_long_to_read_is_named_and_nothing_is_imported(
    api: APIClient, content_type: str
) -> None:
    from web.data.import_formats import MAX_LINE_BYTES

    rows = [("short", "ok")] * 3
    body = ndjson(rows) if content_type == NDJSON else csv_body(rows)
    error = assert_error(post_import(api, body + b"x" * MAX_LINE_BYTES + b"\n", content_type), 400)
    header = content_type == CSV  # the CSV header is line 1
    assert error["lines"] == [
        {"line": 4 + header, "reason": f"Line longer than {MAX_LINE_BYTES} bytes."}
    ]
    assert Data.objects.count() == 0


def test_import_of_the_longest_texts_stores_them_whole(api: APIClient, settings: Any) -> None:
    longest = settings.TEXT_MAX_CHARS  # BLOCK_CHARS is reached every few rows
    rows = [(f"{i}\t\\" + "ü" * (longest - 4), "long") for i in range(25)]
    response = post_import(api, ndjson(rows))
    assert response.status_code == 201 and response.json() == {"created": 25}
    assert list(Data.objects.order_by("id").values_list("text", "label")) == rows


def test_search_finds_imported_rows_as_soon_as_the_import_answers(api: APIClient) -> None:
    rows = [(f"zyxwv payload{i}", "found") for i in range(500)] + [("other text", "x")] * 500
    assert post_import(api, csv_body(rows), CSV).status_code == 201
    page = api.get("/api/data/", {"search": "ZYXWV payload", "ordering": "id"}).json()
    assert [row["text"] for row in page["results"]] == [text for text, _ in rows[:50]]
    few = api.get("/api/data/", {"search": "zyxwv payload49"}).json()
    assert few["count"] == 11  # payload49 and payload490 to payload499


# --- through a real server -------------------------------------------------------------------


@pytest.mark.parametrize(("file_format", "encode"), [("ndjson", ndjson), ("csv", csv_body)])
def test_import_then_export_round_trips_byte_for_byte(
    live_web: LiveWeb,
    transactional_db: Any,
    admin_headers: dict[str, str],
    file_format: str,
    encode: Any,
) -> None:
    body = encode(AWKWARD_ROWS * 3)
    content_type = NDJSON if file_format == "ndjson" else CSV
    created = httpx.post(
        f"{live_web.url}/api/data/import",
        content=body,
        headers={"Content-Type": content_type, **admin_headers},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    exported = httpx.get(
        f"{live_web.url}/api/data/export?format={file_format}", headers=admin_headers, timeout=30
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith(content_type)
    assert exported.content == body


def test_export_applies_the_list_filters_and_ordering(
    live_web: LiveWeb, transactional_db: Any, tokens: dict[str, str]
) -> None:
    rows = [("python tools", "python"), ("perl regex", "perl"), ("python regex", "libs")]
    Data.objects.bulk_create(Data(text=t, label=label) for t, label in rows)
    url = f"{live_web.url}/api/data/export"
    with httpx.Client(headers=bearer(tokens["reader"]), timeout=30) as reader:  # reader exports
        found = reader.get(url, params={"search": "regex", "ordering": "-label"})
        by_label = reader.get(url, params={"label": "python", "format": "csv"})
        bad = reader.get(url, params={"format": "xml"})
    assert found.content == ndjson([("python regex", "libs"), ("perl regex", "perl")][::-1])
    assert by_label.content == b"text,label\npython tools,python\n"
    assert_error(bad, 400, "validation_error")


def test_declared_oversized_import_gets_413_before_the_body_is_sent(live_web: LiveWeb) -> None:
    # No token needed: the size guard answers before Django (and the token check) runs.
    host, port = live_web.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/api/data/import")
    conn.putheader("Content-Type", NDJSON)
    conn.putheader("Content-Length", str(LIVE_IMPORT_MAX_BYTES + 1))
    conn.endheaders()  # and not one byte of the body
    answer = conn.getresponse()
    assert answer.status == 413
    assert json.loads(answer.read())["error"] == "payload_too_large"
    conn.close()


def test_client_that_disconnects_mid_body_leaves_nothing_behind(
    live_web: LiveWeb, transactional_db: Any, admin_headers: dict[str, str]
) -> None:
    body = ndjson([(f"row {i}", "ok") for i in range(20_000)])
    host, port = live_web.url.removeprefix("http://").split(":")
    auth = admin_headers["Authorization"].encode()
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /api/data/import HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            b"Authorization: %s\r\nContent-Length: %d\r\n\r\n" % (auth, len(body) * 2) + body
        )
    time.sleep(0.5)
    assert httpx.get(f"{live_web.url}/health/live", timeout=5).status_code == 200
    assert Data.objects.count() == 0


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


@pytest.mark.slow
def test_web_memory_stays_flat_while_importing_100_mb(
    own_live_web: LiveWeb, transactional_db: Any, admin_headers: dict[str, str]
) -> None:
    live_web = own_live_web  # 104 000 imported rows: their indexing ends with this web
    (worker,) = live_web.worker_pids()
    row = json.dumps({"text": "kernel module " * 70, "label": "kernel"}).encode() + b"\n"
    copies = 100 * 1024 * 1024 // len(row) + 1

    def body() -> Any:
        for _ in range(copies // 1000):
            yield row * 1000

    warm = httpx.post(
        f"{live_web.url}/api/data/import",
        content=row * 1000,
        headers={"Content-Type": NDJSON, **admin_headers},
        timeout=60,
    )
    assert warm.status_code == 201
    before = _peak_rss_kib(worker)
    headers = {"Content-Type": NDJSON, **admin_headers}
    response = httpx.post(
        f"{live_web.url}/api/data/import", content=body(), headers=headers, timeout=300
    )
    assert response.status_code == 201, response.text
    assert response.json()["created"] == copies // 1000 * 1000
    growth_mib = (_peak_rss_kib(worker) - before) / 1024
    assert growth_mib < 30, f"peak RSS grew by {growth_mib:.0f} MiB for a 100 MB body"
    wait_until(lambda: Data.objects.count() == copies // 1000 * 1000 + 1000, timeout=5)


def test_openapi_declares_the_transfer_routes_and_the_cursor_list(api: APIClient) -> None:
    from openapi_spec_validator import validate

    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    validate(schema)
    imported = schema["paths"]["/api/data/import/"]["post"]
    assert set(imported["requestBody"]["content"]) == {NDJSON, CSV}
    assert {"201", "400", "413", "415"} <= set(imported["responses"])
    exported = schema["paths"]["/api/data/export/"]["get"]
    assert set(exported["responses"]["200"]["content"]) == {NDJSON, CSV}
    listed = schema["paths"]["/api/data/"]["get"]
    assert "cursor" in {p["name"] for p in listed["parameters"]}
    page = listed["responses"]["200"]["content"]["application/json"]["schema"]
    page = schema["components"]["schemas"][page["$ref"].rpartition("/")[2]]
    assert "pg_class.reltuples" in page["properties"]["count"]["description"]
    patterns = {
        schema["components"]["schemas"][name]["properties"][field]["pattern"]
        for name in ("DataRequest", "Data")
        for field in ("text", "label")
    }
    (pattern,) = patterns  # what the API refuses, the schema does not declare valid
    assert [bool(re.search(pattern, v)) for v in ("a", " a ", "\x00", " \x00 ", "  ")] == [
        True,
        True,
        False,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("fine", "ok"),
        ("fine", "  padded  "),
        ("  spaced text ", "x"),
        ("", "x"),
        ("t", ""),
        (" \t", "x"),
        ("t", " \n"),
        (12, "x"),
        ("t", None),
        ("t", "l" * 100),
        ("t", "l" * 101),
        ("t", " " + "l" * 100),
        ("t" * 100_000, "x"),
        ("t" * 100_001, "x"),
        ("a\x00b", "x"),
        ("t", "a\x00"),
        ("a\ud800b", "x"),
        ("t", "\udfff"),
        ("naïve 漢字 🙂", "ünï"),
    ],
)
def test_the_import_s_block_check_accepts_and_cleans_exactly_what_the_api_rules_do(
    text: Any, label: Any
) -> None:
    from web.data import rules

    try:
        expected: Any = [rules.clean_row({"text": text, "label": label})]
    except rules.RowProblem:
        expected = None
    columns = rules.clean_columns(["fine", text], ["ok", label])
    assert (None if columns is None else list(zip(*columns, strict=True))) == (
        None if expected is None else [("fine", "ok"), *expected]
    )


def test_bad_lines_after_the_first_block_are_named_by_their_own_numbers(api: APIClient) -> None:
    rows = [(f"row {i}", "ok") for i in range(BLOCK_ROWS + 600)]
    rows[BLOCK_ROWS + 100] = ("two\nlines", "ok")  # one record over two physical lines
    rows[BLOCK_ROWS + 500] = (" ", "ok")
    error = assert_error(post_import(api, csv_body(rows), CSV), 400, "validation_error")
    # The header is line 1; the multi-line record shifts every later record by one line.
    assert error["lines"] == [
        {"line": BLOCK_ROWS + 503, "reason": "text: This field may not be blank."}
    ]
    lines = [json.dumps({"text": t, "label": label}) for t, label in rows]
    lines[BLOCK_ROWS + 7] = "{not json"
    error = assert_error(post_import(api, "\n".join(lines).encode()), 400, "validation_error")
    assert [bad["line"] for bad in error["lines"]] == [BLOCK_ROWS + 8, BLOCK_ROWS + 501]
    assert Data.objects.count() == 0
