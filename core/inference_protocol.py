"""The Open Inference Protocol (KServe v2 REST) as both services speak it: names, requests, answers.

One model, `default`, takes one BYTES input `text` of shape [N] or [N, 1] (flat or nested data)
and answers `label` (BYTES) and `probabilities` (FP32 scores, shape [N, labels]); with Triton's
classification extension (`"parameters": {"classification": k}` on `probabilities`) it answers
"<score>:<index>:<label>" strings of shape [N, k] instead. Unknown parameters are ignored (clients
send their own, e.g. `binary_data`). Parsing checks the protocol's structure only: each service
checks the texts themselves with the limits of its native predict.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MODEL_NAME = "default"
INPUT_NAME = "text"
LABEL_OUTPUT = "label"
SCORES_OUTPUT = "probabilities"
OUTPUTS = (LABEL_OUTPUT, SCORES_OUTPUT)
ALIASES = ("champion", "previous", "challenger")
EXTENSIONS = ["classification"]
PLATFORM = "scikit-learn"
SERVER_NAME = "textclf"
# Triton's binary tensor extension announces a binary body with this header; we speak JSON only.
BINARY_HEADER = "Inference-Header-Content-Length"


class ProtocolError(ValueError):
    """A request the protocol (or this model) cannot take; `code` is ours, for the extra field."""

    def __init__(self, message: str, *, code: str = "invalid_request", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def _not_null(value: Any) -> Any:
    # An optional field may be left out, not sent as null (the schemas say so: no nullable).
    if value is None:
        raise ValueError("must not be null; leave the field out instead")
    return value


class _Input(BaseModel):
    model_config = ConfigDict(strict=True)

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]

    _no_null = field_validator("parameters")(_not_null)


class _RequestedOutput(BaseModel):
    model_config = ConfigDict(strict=True)

    name: str
    parameters: dict[str, Any] | None = None

    _no_null = field_validator("parameters")(_not_null)


class _InferenceRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[_Input] = Field(min_length=1)
    outputs: list[_RequestedOutput] | None = None

    _no_null = field_validator("id", "parameters", "outputs")(_not_null)


class InferenceCall(NamedTuple):
    """What a valid request asks: its texts, which outputs, and what to echo back."""

    texts: list[str]
    nested: bool  # the input was [N, 1]: answer `label` in the same shape
    want_label: bool
    want_scores: bool
    classification: int | None  # k of the classification extension on `probabilities`
    request_id: str | None
    parameters: dict[str, Any] | None

    @property
    def labels_only(self) -> bool:
        return self.want_label and not self.want_scores


def parse_infer_request(body: bytes | str | dict[str, Any]) -> InferenceCall:
    """Read an inference request (its JSON text, or that text already parsed); ProtocolError
    when it is not one this model takes."""
    try:
        if isinstance(body, dict):
            request = _InferenceRequest.model_validate(body)
        else:
            request = _InferenceRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _as_protocol_error(exc) from None
    if len(request.inputs) != 1:
        raise ProtocolError(f"model {MODEL_NAME} takes one input, {INPUT_NAME!r}")
    texts, nested = _texts_of(request.inputs[0])
    want_label = want_scores = True  # no `outputs`: every output, as the protocol says
    classification = None
    if request.outputs is not None:
        names = [output.name for output in request.outputs]
        unknown = sorted(set(names) - set(OUTPUTS))
        if unknown or len(set(names)) != len(names):
            raise ProtocolError(
                f"unknown or repeated output in {names}: model {MODEL_NAME} has {list(OUTPUTS)}"
            )
        want_label, want_scores = LABEL_OUTPUT in names, SCORES_OUTPUT in names
        for output in request.outputs:
            k = (output.parameters or {}).get("classification")
            if k is None:
                continue
            if output.name != SCORES_OUTPUT:
                raise ProtocolError(f"classification applies to output {SCORES_OUTPUT!r} only")
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ProtocolError("parameter classification must be a positive integer")
            classification = k
    return InferenceCall(
        texts=texts,
        nested=nested,
        want_label=want_label,
        want_scores=want_scores,
        classification=classification,
        request_id=request.id,
        parameters=request.parameters,
    )


def _texts_of(tensor: _Input) -> tuple[list[str], bool]:
    if tensor.name != INPUT_NAME:
        raise ProtocolError(f"unexpected input {tensor.name!r}: model {MODEL_NAME} takes 'text'")
    if tensor.datatype != "BYTES":
        raise ProtocolError(f"input {INPUT_NAME!r} must be BYTES, not {tensor.datatype}")
    shape = tensor.shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
        raise ProtocolError(f"input {INPUT_NAME!r} must have shape [N] or [N, 1], not {shape}")
    data = tensor.data
    if len(shape) == 2 and all(isinstance(row, list) and len(row) == 1 for row in data):
        data = [row[0] for row in data]  # nested row-major data of an [N, 1] tensor
    if len(data) != shape[0]:
        raise ProtocolError(f"input {INPUT_NAME!r} holds {len(data)} elements for shape {shape}")
    if not all(isinstance(text, str) for text in data):
        raise ProtocolError(f"input {INPUT_NAME!r} must hold strings (JSON data, not binary)")
    return data, len(shape) == 2


def _as_protocol_error(exc: ValidationError) -> ProtocolError:
    errors = exc.errors(include_url=False, include_input=False)
    if any(error["type"] in {"json_invalid", "json_type"} for error in errors):
        return ProtocolError("the body is not valid JSON", code="invalid_json")
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    message = first["msg"].removeprefix("Value error, ")
    return ProtocolError(f"{where}: {message}", code="validation_error")


def infer_response(
    call: InferenceCall,
    *,
    version: str,
    labels: list[str],
    ranked: list[list[tuple[str, float]]] | None = None,
    classes: list[str] | None = None,
) -> dict[str, Any]:
    """The inference response; `ranked` holds each text's best labels and scores, best first
    (all of them for `probabilities`, k with classification), `classes` the model's labels."""
    count = len(labels)
    outputs: list[dict[str, Any]] = []
    if call.want_label:
        shape = [count, 1] if call.nested else [count]
        outputs.append({"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": shape, "data": labels})
    if call.want_scores and ranked is not None and classes is not None:
        outputs.append(_scores_output(call.classification, ranked, classes))
    answer: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": version}
    if call.request_id is not None:
        answer["id"] = call.request_id
    if call.parameters is not None:
        answer["parameters"] = call.parameters
    answer["outputs"] = outputs
    return answer


def _scores_output(
    k: int | None, ranked: list[list[tuple[str, float]]], classes: list[str]
) -> dict[str, Any]:
    index = {label: position for position, label in enumerate(classes)}
    if k is not None:  # Triton's classification: "<score>:<index>:<label>", best first
        data = [f"{score:f}:{index[label]}:{label}" for best in ranked for label, score in best]
        return {"name": SCORES_OUTPUT, "datatype": "BYTES", "shape": [len(ranked), k], "data": data}
    flat = [0.0] * (len(ranked) * len(classes))
    for row, best in enumerate(ranked):  # every label's score, in the model's class order
        for label, score in best:
            flat[row * len(classes) + index[label]] = score
    shape = [len(ranked), len(classes)]
    return {"name": SCORES_OUTPUT, "datatype": "FP32", "shape": shape, "data": flat}


def model_metadata(*, versions: list[str], label_count: int | None) -> dict[str, Any]:
    """The model's metadata: its versions served here, one text input, its two outputs."""
    return {
        "name": MODEL_NAME,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": SCORES_OUTPUT, "datatype": "FP32", "shape": [-1, label_count or -1]},
        ],
    }


def server_metadata() -> dict[str, Any]:
    """The server's metadata: its name, its release, the protocol extensions it speaks."""
    try:
        release = metadata.version(SERVER_NAME)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        release = "unknown"
    return {"name": SERVER_NAME, "version": release, "extensions": EXTENSIONS}


def error_body(message: str, code: str) -> dict[str, str]:
    """The protocol's error object, with our error code beside the message."""
    return {"error": message, "code": code}
