"""POST /api/data/import and GET /api/data/export: whole tables in and out, streamed."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import (
    exceptions,
    generics,
    negotiation,
    parsers,
    renderers,
    serializers,
    status,
)
from rest_framework.request import Request
from rest_framework.response import Response

from web.data import exporting, importing
from web.data.export_slots import export_slots
from web.data.filters import (
    SEARCH_DESCRIPTION,
    SEARCH_PATTERN,
    LabelFilter,
    NulMatchesNothingMixin,
    TrigramSearchFilter,
    backlog_waiting_for,
)
from web.data.model_names import (
    MODEL_QUERY_PARAMETER,
    checked_model,
    register_on_first_write,
    requested_model,
)
from web.data.models import Data
from web.data.pagination import (
    ORDERING_DESCRIPTION,
    ORDERINGS,
    ordered_by,
    reads_by_label,
    requested_ordering,
)
from web.data.serializers import ErrorSerializer
from web.data.statement_timeout import (
    UNAVAILABLE_DESCRIPTION,
    transfer_statement_timeout,
)


class _StreamedBody(parsers.BaseParser):
    """Names a media type the import reads; the view streams the body itself."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        raise exceptions.ParseError("The import body is read by the view.")


class NdjsonBody(_StreamedBody):
    media_type = importing.NDJSON


class CsvBody(_StreamedBody):
    media_type = importing.CSV


class RequiredBodySchema(AutoSchema):
    """The import's body is required: a request without one is answered 415."""

    def _get_request_body(self, *args: Any, **kwargs: Any) -> Any:
        body = super()._get_request_body(*args, **kwargs)
        if body:
            body["required"] = True
        return body


class ImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField(help_text="Rows added (all of the body's rows).")


# The shortest bodies the import accepts, one row each: `{"text":"a","label":"b"}` and
# "text,label\na,b". An empty body (or a header alone) imports nothing and is refused.
_NDJSON_FILE = {"type": "string", "minLength": 25, "description": "One JSON object per row"}
_CSV_FILE = {"type": "string", "minLength": 14, "description": "The header, then one row or more"}
_ERROR = OpenApiResponse(ErrorSerializer)
_FORBIDDEN = OpenApiResponse(
    ErrorSerializer,
    description="forbidden: the token's role is too low, or the token may not use the model",
)
_UNAVAILABLE = OpenApiResponse(ErrorSerializer, description=UNAVAILABLE_DESCRIPTION)


@extend_schema(
    summary="Import rows from NDJSON or CSV, all or nothing",
    description='`application/x-ndjson`: one `{"text", "label"}` object per line. '
    "`text/csv`: a `text,label` header, then one record per row (RFC 4180 quoting; texts may "
    "hold newlines). UTF-8. Rows obey the same rules as `POST /api/data/`. The body is streamed "
    "into one COPY; any bad line refuses the whole import, and the 400 lists the first 100 bad "
    'lines as `lines: [{"line", "reason"}]`. The body may have at most IMPORT_MAX_BYTES bytes. '
    "Every row goes to the model `?model=` names (default `default`; the rows themselves carry "
    "no `model`); the first import under a new name creates it.",
    parameters=[MODEL_QUERY_PARAMETER],
    request={importing.NDJSON: _NDJSON_FILE, importing.CSV: _CSV_FILE},
    responses={
        201: ImportResultSerializer,
        400: OpenApiResponse(
            ErrorSerializer, description="Bad lines, or an invalid model name; nothing was imported"
        ),
        403: _FORBIDDEN,
        413: OpenApiResponse(ErrorSerializer, description="Body over IMPORT_MAX_BYTES"),
        415: OpenApiResponse(ErrorSerializer, description="Neither NDJSON nor CSV"),
        503: _UNAVAILABLE,
    },
)
class DataImportView(generics.GenericAPIView):
    schema = RequiredBodySchema()
    parser_classes = [NdjsonBody, CsvBody]
    serializer_class = ImportResultSerializer

    def post(self, request: Request) -> Response:
        media_type = _body_media_type(request)
        model = checked_model(requested_model(request, must_exist=False))
        max_bytes = settings.IMPORT_MAX_BYTES
        if int(request.META.get("CONTENT_LENGTH") or 0) > max_bytes:
            raise importing.ImportTooLargeError(max_bytes)
        lines = importing.bounded_line_lists(request._request.read, max_bytes=max_bytes)
        # The COPY lasts as long as the upload: the longer, explicit timeout of transfers.
        # One transaction (the timeout's): the rows and a new name's registration, or neither.
        with transfer_statement_timeout():
            created = importing.import_rows(lines, media_type=media_type, model=model)
            register_on_first_write({model}, request=request)
        return Response({"created": created}, status=status.HTTP_201_CREATED)


def _body_media_type(request: Request) -> str:
    media_type, _, params = (request.content_type or "").partition(";")
    media_type = media_type.strip().lower()
    charset = params.partition("charset=")[2].split(";")[0].strip().strip('"').lower()
    if media_type not in importing.MEDIA_TYPES or charset not in ("", "utf-8", "utf8"):
        raise exceptions.UnsupportedMediaType(
            request.content_type or "(none)",
            detail="Send application/x-ndjson or text/csv, in UTF-8.",
        )
    return media_type


class JsonErrorsOnly(negotiation.BaseContentNegotiation):
    """The export's `?format=` picks the file format, not a DRF renderer; errors are JSON."""

    def select_parser(self, request: Any, parsers: Any) -> None:
        return None

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        return renderers[0], renderers[0].media_type


@extend_schema(
    summary="Export rows as NDJSON or CSV, streamed",
    description="The rows the list would show (same `model`, `label`, `search` and "
    "`ordering`), all of them, streamed in constant memory. The output is a valid import body "
    "(`text` and `label`: import it under any name with `?model=`). At most "
    "EXPORT_MAX_PER_TOKEN exports of one token (and EXPORT_MAX_PER_PROCESS of one server "
    "process) run at once: one more is answered 429 `too_many_exports`. A client that takes "
    "nothing for EXPORT_SEND_DEADLINE_SECONDS is disconnected.",
    parameters=[
        MODEL_QUERY_PARAMETER,
        OpenApiParameter(
            "format", str, enum=[exporting.NDJSON, exporting.CSV], default=exporting.NDJSON
        ),
        OpenApiParameter("label", str, description="Only rows with this label."),
        OpenApiParameter(
            "search",
            str,
            description=SEARCH_DESCRIPTION,
            pattern=SEARCH_PATTERN,
        ),
        OpenApiParameter(
            "ordering",
            str,
            description=ORDERING_DESCRIPTION,
            enum=ORDERINGS,
            default="id",
        ),
    ],
    responses={
        (200, importing.NDJSON): OpenApiTypes.STR,
        (200, importing.CSV): OpenApiTypes.STR,  # sent with "; charset=utf-8"
        400: _ERROR,
        403: _FORBIDDEN,
        404: OpenApiResponse(ErrorSerializer, description="not_found: no such model name"),
        503: _UNAVAILABLE,
    },
)
class DataExportView(NulMatchesNothingMixin, generics.GenericAPIView):
    content_negotiation_class = JsonErrorsOnly
    renderer_classes = [renderers.JSONRenderer]
    queryset = Data.objects.all()
    filter_backends = [DjangoFilterBackend, TrigramSearchFilter]
    filterset_class = LabelFilter
    search_fields = ["text"]
    pagination_class = None

    def get_queryset(self) -> QuerySet[Data]:
        return Data.objects.filter(model=requested_model(self.request))

    def get(self, request: Request) -> StreamingHttpResponse:
        file_format = request.query_params.get("format", exporting.NDJSON)
        if file_format not in exporting.MEDIA_TYPES:
            raise exceptions.ValidationError({"format": ["One of: ndjson, csv."]})
        ordering = requested_ordering(request)
        field = ordering.lstrip("-")
        queryset = self.filter_queryset(self.get_queryset()).order_by(
            *ordered_by(field, ascending=not ordering.startswith("-"))
        )
        if reads_by_label(request, field) and not backlog_waiting_for(self):
            # Every row is indexed: saying so lets PostgreSQL read the label index (indexed
            # rows only). While an import waits, its rows are read with the rest, unindexed.
            queryset = queryset.filter(search_indexed=True)
        sql = exporting.export_sql(queryset, file_format=file_format)
        slot = export_slots.acquire(getattr(request, "token_id", None))
        response = StreamingHttpResponse(
            exporting.stream_copy(
                sql,
                file_format=file_format,
                slot=slot,
                statement_timeout_ms=settings.TRANSFER_STATEMENT_TIMEOUT_MS,
                send_deadline_seconds=settings.EXPORT_SEND_DEADLINE_SECONDS,
            ),
            content_type=exporting.MEDIA_TYPES[file_format],
        )
        slot.release_with(response)  # also when the stream never runs (client gone first)
        response["Content-Disposition"] = f'attachment; filename="data.{file_format}"'
        return response
