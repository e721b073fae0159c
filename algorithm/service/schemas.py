"""Request and response bodies of the algorithm service (pydantic, strict).

The job's shape is `core.jobs.Job`, shared with the job store.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from algorithm.service.errors import BadRequest
from core.model_names import DEFAULT_MODEL, InvalidModelName, check_model_name
from core.settings import PredictLimits


def _check_model(value: str) -> str:
    try:
        return check_model_name(value)
    except InvalidModelName as exc:
        raise ValueError(str(exc)) from None


class PredictRequest(BaseModel):
    """Exactly one of `text` (one prediction) or `texts` (a batch)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(default=DEFAULT_MODEL, description="The model name (absent: default).")
    text: str | None = Field(default=None, description="One text to classify.")
    texts: list[str] | None = Field(default=None, description="Several texts to classify.")
    top_k: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Also answer the k most likely labels with their scores."
    )

    @field_validator("text")
    @classmethod
    def _check_text(cls, value: str | None, info: ValidationInfo) -> str:
        # Validators run only on fields the body names, so None here is an explicit null.
        if value is None:
            raise ValueError("must be a string, not null")
        _check_one(value, info.context or {})
        return value

    @field_validator("model")
    @classmethod
    def _check_model_name(cls, value: str) -> str:
        return _check_model(value)

    @field_validator("texts")
    @classmethod
    def _check_texts(cls, value: list[str] | None, info: ValidationInfo) -> list[str]:
        if value is None:
            raise ValueError("must be a list of strings, not null")
        limits = info.context or {}
        max_texts = limits.get("max_texts", 1000)
        if not value:
            raise ValueError("must hold at least one text")
        if len(value) > max_texts:
            raise ValueError(f"at most {max_texts} texts per request, got {len(value)}")
        for index, text in enumerate(value):
            try:
                _check_one(text, limits)
            except ValueError as exc:
                raise ValueError(f"item {index}: {exc}") from None
        return value

    @field_validator("top_k", mode="before")
    @classmethod
    def _top_k_whole_number_as_int(cls, value: Any) -> Any:
        return _whole_number_as_int(value)

    @field_validator("top_k")
    @classmethod
    def _check_top_k(cls, value: int | None, info: ValidationInfo) -> int:
        if value is None:
            raise ValueError("must be an integer, not null")
        max_top_k = (info.context or {}).get("max_top_k", 100)
        if value > max_top_k:
            raise ValueError(f"must be at most {max_top_k} (PREDICT_MAX_TOP_K)")
        return value


def _whole_number_as_int(value: Any) -> Any:
    """3.0 is the integer 3, as JSON Schema's "integer" has it; 1.5 and true stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _check_one(text: str, limits: dict[str, Any]) -> None:
    max_chars = limits.get("max_chars", 100_000)
    if not text or text.isspace():  # isspace stops at the first visible character; strip copies
        raise ValueError("must not be empty or blank")
    if len(text) > max_chars:
        raise ValueError(f"at most {max_chars} characters, got {len(text)}")


class LabelScore(BaseModel):
    label: str
    score: float = Field(ge=0, le=1, description="Confidence in [0, 1]; ranks like the model.")


class PredictResponse(BaseModel):
    label: str
    model_version: str
    scores: list[LabelScore] | None = Field(
        default=None, description="Only with `top_k`: the k most likely labels, best first."
    )


class BatchPredictResponse(BaseModel):
    labels: list[str]
    model_version: str
    scores: list[list[LabelScore]] | None = Field(
        default=None, description="Only with `top_k`: per text, its k most likely labels."
    )


class TrainRequest(BaseModel):
    """POST /train's optional body: which model to train (absent: default)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(default=DEFAULT_MODEL, description="The model name to train.")

    @field_validator("model")
    @classmethod
    def _check_model_name(cls, value: str) -> str:
        return _check_model(value)


def parse_train_request(body: bytes) -> TrainRequest:
    """No body (or `{}`) trains `default`; BadRequest with field errors otherwise."""
    if not body.strip():
        return TrainRequest()
    try:
        return TrainRequest.model_validate_json(body)
    except ValidationError as exc:
        if any(error["type"] != "value_error" for error in exc.errors()):
            # Anything but a bad name: not what /train takes (as before it took a name).
            raise BadRequest(
                'POST /train takes no body, or {"model": "<name>"}.', code="invalid_request"
            ) from None
        raise _as_bad_request(exc) from None


class Liveness(BaseModel):
    status: Literal["ok"]


class Started(BaseModel):
    status: Literal["ok"]
    model_version: str | None = Field(
        description="The version this process serves: the registry's champion (None before any)."
    )


class ServedModelState(BaseModel):
    version: str | None = Field(description="The champion version served.")
    memory_bytes: int = Field(description="What the model costs this process (RSS growth).")
    pinned: bool = Field(description="Never unloaded (MODEL_PINNED).")


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Literal["ok", "unavailable"]] = Field(
        description='Each dependency\'s state: "ok" or "unavailable".'
    )
    model_version: str | None = Field(description="The model version this process serves.")
    model_error: str | None = Field(
        description="Which version this process failed to load, if any (the log says why)."
    )
    models: dict[str, ServedModelState] = Field(
        default_factory=dict,
        description="Every model this process holds, by name, with what it costs in memory.",
    )


class Error(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. invalid_request, no_model.")
    detail: str = Field(description="What went wrong, for a person.")
    fields: dict[str, list[str]] | None = Field(default=None, description="Per-field messages.")


def parse_predict_request(body: bytes, *, limits: PredictLimits) -> PredictRequest:
    """Validate a raw JSON body; BadRequest with field errors when it is not acceptable, 413
    when its texts hold more characters in all than one request may."""
    context = {
        "max_texts": limits.predict_max_texts,
        "max_chars": limits.predict_max_chars,
        "max_top_k": limits.predict_max_top_k,
    }
    try:
        # The parser refuses JSON nested deeper than 200 levels itself (json_invalid), without
        # recursing in Python: deep nesting is a 400 like any other malformed body.
        parsed = PredictRequest.model_validate_json(body, context=context)
    except ValidationError as exc:
        raise _as_bad_request(exc) from None
    if (parsed.text is None) == (parsed.texts is None):
        raise BadRequest(
            'Send exactly one of "text" (a string) or "texts" (a list of strings).',
            code="validation_error",
            fields={"text": ["Exactly one of text or texts is required."]},
        )
    total = len(parsed.text) if parsed.text is not None else sum(map(len, parsed.texts or ()))
    if total > limits.predict_max_total_chars:
        raise BadRequest(
            f"The texts hold {total} characters in all; one request takes at most "
            f"{limits.predict_max_total_chars} (PREDICT_MAX_TOTAL_CHARS). Send them in "
            "several requests.",
            code="request_entity_too_large",
        ).with_status(413)
    return parsed


def _as_bad_request(exc: ValidationError) -> BadRequest:
    errors = exc.errors(include_url=False, include_input=False)
    if any(error["type"] in {"json_invalid", "json_type"} for error in errors):
        if any("recursion limit" in error["msg"] for error in errors):
            return BadRequest(
                "The body is not valid JSON here: nested too deep.", code="invalid_json"
            )
        return BadRequest("The body is not valid JSON.", code="invalid_json")
    fields: dict[str, list[str]] = {}
    for error in errors:
        name = str(error["loc"][0]) if error["loc"] else "body"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "Unknown field."
        elif error["type"] == "model_type":
            name, message = "body", 'Expected a JSON object with "text" or "texts".'
        fields.setdefault(name, []).append(message)
    summary = "; ".join(f"{name}: {', '.join(messages)}" for name, messages in fields.items())
    return BadRequest(summary, code="validation_error", fields=fields)
