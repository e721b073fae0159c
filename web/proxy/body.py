"""What POST /api/predict/ accepts, declared once: validation here, the OpenAPI schema from it.

A body is exactly one of `{"text": "..."}` or `{"texts": ["...", ...]}`; the key present picks
the pydantic model, so a wrong body is told what that shape expects. Options shared by both
shapes go on `PredictOptions`, among them `model`: the name of the classifier asked (a slug,
`default` when absent; core/model_names.py). The limits are the algorithm service's
(PREDICT_MAX_TEXTS, PREDICT_MAX_CHARS, PREDICT_MAX_TOP_K, PREDICT_MAX_TOTAL_CHARS, declared once
for both services in core/settings.py `PredictLimits`), checked here so a bad body never costs a
hop.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from django.conf import settings
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from core.model_names import DEFAULT_MODEL, MODEL_NAME_PATTERN, InvalidModelName, check_model_name
from web.config import get_settings
from web.errors import PayloadTooLarge, ValidationFailed

LIMITS = get_settings()

# JSON may escape lone surrogates ("\\ud800"); they are not text and cannot be encoded onwards.
SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_blank_or_surrogates(text: str) -> str:
    if not text or text.isspace():
        raise PydanticCustomError("blank", "Must not be empty or blank.")
    if SURROGATE.search(text):
        raise PydanticCustomError("surrogate", "Surrogate characters are not allowed.")
    return text


Text = Annotated[
    str,
    # The schema states the not-blank rule too (Python's \S, as str.isspace decides blankness).
    Field(max_length=settings.PREDICT_MAX_CHARS, json_schema_extra={"pattern": r"\S"}),
    AfterValidator(_refuse_blank_or_surrogates),
]


def _model_name(name: str) -> str:
    try:
        return check_model_name(name)
    except InvalidModelName as exc:
        raise PydanticCustomError("model_name", str(exc)) from None


ModelName = Annotated[
    str,
    Field(json_schema_extra={"pattern": f"^{MODEL_NAME_PATTERN}$"}),
    AfterValidator(_model_name),
]


def _whole_number_as_int(value: Any) -> Any:
    """3.0 is the integer 3, as JSON Schema's "integer" has it; 1.5 and true stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _no_default_in_schema(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class PredictOptions(BaseModel):
    """Fields both body shapes accept; unknown fields are refused.

    Give an optional field a default value rather than None: web's schema is OpenAPI 3.0,
    which has no null type (tests/web/test_openapi.py validates it).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # Not sent means no scores. 0 stands for that because no body can send it (ge=1), so
    # `null` stays refused like any other non-integer; the schema shows the field optional,
    # without that default, and only fields the body sent are forwarded (exclude_unset).
    top_k: Annotated[int, BeforeValidator(_whole_number_as_int)] = Field(
        default=0,
        ge=1,
        le=LIMITS.predict_max_top_k,
        description="Also answer `scores`: the k most likely labels with their confidence in "
        "[0, 1], best first. At most the number of labels of the served model (409 above it).",
        json_schema_extra=_no_default_in_schema,
    )
    model: ModelName = Field(
        default=DEFAULT_MODEL,
        description="The model to ask, by name (`default` when absent). An unknown name "
        "answers 404; a name the token may not use, 403.",
    )


class PredictOne(PredictOptions):
    text: Text = Field(description="The text to label.")


class PredictMany(PredictOptions):
    texts: list[Text] = Field(
        min_length=1,
        max_length=settings.PREDICT_MAX_TEXTS,
        description="Texts to label, answered in the same order.",
    )


def _shape(body: Any) -> str:
    return "many" if "texts" in body else "one"


PredictBody = Annotated[
    Annotated[PredictOne, Tag("one")] | Annotated[PredictMany, Tag("many")],
    Discriminator(_shape),
]
_predict_body = TypeAdapter(PredictBody)


def parse_predict_body(body: Any) -> PredictOne | PredictMany:
    """The validated predict body; ValidationFailed names every wrong field, PayloadTooLarge
    a batch over the total-characters cap."""
    if not isinstance(body, dict):
        expected = 'The body must be a JSON object with exactly one of "text" or "texts".'
        raise ValidationFailed(expected, fields={"body": [expected]})
    try:
        parsed = _predict_body.validate_python(body)
    except ValidationError as exc:
        fields = _field_errors(exc)
        summary = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items())
        if ("text" in body) == ("texts" in body):
            summary = 'Send exactly one of "text" (a string) or "texts" (a list of strings).'
        raise ValidationFailed(summary, fields=fields) from None
    total = len(parsed.text) if isinstance(parsed, PredictOne) else sum(map(len, parsed.texts))
    if total > LIMITS.predict_max_total_chars:
        raise PayloadTooLarge(
            f"The texts hold {total} characters in all; one request takes at most "
            f"{LIMITS.predict_max_total_chars}. Send them in several requests."
        )
    return parsed


def _field_errors(exc: ValidationError) -> dict[str, list[str]]:
    """{"texts": ["item 3: Must not be empty or blank."]}: the field, then where inside it."""
    fields: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False)[:20]:
        _, name, *inner = error["loc"]  # the first part is the shape's tag
        where = "".join(f"item {part}: " for part in inner)
        message = "Unknown field." if error["type"] == "extra_forbidden" else error["msg"]
        fields.setdefault(str(name), []).append(where + message)
    return fields
