"""web's predict and train views in-process: the real ASGI app, the algorithm at the network edge.

Each test talks to `web.asgi.application` through httpx's ASGI transport while an
httpx.MockTransport plays the algorithm service (`InProcessWeb` in conftest), with an editor
token (committed: the app checks it from another thread).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.helpers import assert_error
from tests.web.conftest import InProcessWeb


@pytest.fixture
def web(web_as: Callable[[str | None], InProcessWeb]) -> InProcessWeb:
    """Every request here presents an editor token: predict needs reader, train editor."""
    return web_as("editor")


def labels_by_length(request: httpx.Request) -> httpx.Response:
    """A trained algorithm service: the label is the text's length."""
    assert (request.method, request.url.path) == ("POST", "/predict")
    texts = json.loads(request.content)["texts"]
    return httpx.Response(
        200, json={"labels": [f"len{len(t)}" for t in texts], "model_version": "v7"}
    )


def must_not_be_called(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"web called the algorithm service: {request.method} {request.url}")


def test_one_text_gets_its_label(web: InProcessWeb) -> None:
    response = web.ask(labels_by_length, "POST", "/api/predict/", json={"text": "abc"})
    assert response.status_code == 200
    assert response.json() == {"label": "len3", "model_version": "v7"}


def test_a_batch_gets_its_labels_in_order(web: InProcessWeb) -> None:
    response = web.ask(
        labels_by_length, "POST", "/api/predict", json={"texts": ["a", "abcd", "ab"]}
    )
    assert response.status_code == 200
    assert response.json() == {"labels": ["len1", "len4", "len2"], "model_version": "v7"}


def test_no_model_yet_is_passed_through(web: InProcessWeb) -> None:
    def untrained(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "no_model", "detail": "Train a model first."})

    error = assert_error(web.ask(untrained, "POST", "/api/predict/", json={"text": "x"}), 503)
    assert error == {"error": "no_model", "detail": "Train a model first."}


def test_unreachable_algorithm_is_503(web: InProcessWeb) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    response = web.ask(refuse, "POST", "/api/predict/", json={"text": "x"})
    assert_error(response, 503, "algorithm_unavailable")
    assert_error(web.ask(refuse, "POST", "/api/train/"), 503, "algorithm_unavailable")


def test_silent_algorithm_is_504(web: InProcessWeb) -> None:
    def silent(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    response = web.ask(silent, "POST", "/api/predict/", json={"texts": ["a", "b"]})
    assert_error(response, 504, "algorithm_unavailable")
    assert_error(web.ask(silent, "GET", "/api/train/some-job/"), 504, "algorithm_unavailable")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
        ({"text": 3}, "text"),
        ({"text": ["a"]}, "text"),
        ({"text": "x" * 100_001}, "text"),
        ({"texts": []}, "texts"),
        ({"texts": "abc"}, "texts"),
        ({"texts": ["a"] * 1001}, "texts"),
        ({"texts": ["fine", ""]}, "texts"),
        ({"text": "a", "extra": 1}, "extra"),
        ({"text": "a", "texts": ["b"]}, "text"),
        ({}, "text"),
        ([1, 2], "body"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(web: InProcessWeb, body: Any, field: str) -> None:
    response = web.ask(must_not_be_called, "POST", "/api/predict/", json=body)
    error = assert_error(response, 400, "validation_error")
    assert field in error["fields"]
    assert field in error["detail"] or "exactly one" in error["detail"]


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b'{"text": ', 400, "invalid_json"),
        (b'{"text": "\xff"}', 400, "invalid_json"),
        (b'{"text": "a lone \\ud800 surrogate"}', 400, "validation_error"),
        (b'{"texts": ["fine", "\\udfff"]}', 400, "validation_error"),
    ],
)
def test_bodies_that_are_not_text_are_400(
    web: InProcessWeb, content: bytes, status: int, code: str
) -> None:
    response = web.ask(
        must_not_be_called,
        "POST",
        "/api/predict/",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, status, code)


def test_wrong_media_type_method_and_size(web: InProcessWeb) -> None:
    form = web.ask(must_not_be_called, "POST", "/api/predict/", data={"text": "x"})
    assert_error(form, 415, "unsupported_media_type")
    wrong_method = web.ask(must_not_be_called, "GET", "/api/predict/")
    assert_error(wrong_method, 405, "method_not_allowed")
    assert wrong_method.headers["Allow"] == "POST"
    assert_error(web.ask(must_not_be_called, "PUT", "/health/live"), 405, "method_not_allowed")


def test_a_body_larger_than_django_accepts_is_413(web: InProcessWeb, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = web.ask(must_not_be_called, "POST", "/api/predict/", json={"text": "x" * 2000})
    assert_error(response, 413, "payload_too_large")


def test_training_is_accepted_with_the_job_location(web: InProcessWeb) -> None:
    def queue(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/train")
        return httpx.Response(202, json={"job_id": "j1", "status": "queued"})

    response = web.ask(queue, "POST", "/api/train/")
    assert response.status_code == 202
    assert response.headers["Location"] == "/api/train/j1/"
    assert response.json()["status"] == "queued"
    with_body = web.ask(must_not_be_called, "POST", "/api/train/", json={"rows": 5})
    assert_error(with_body, 400, "invalid_request")


def test_an_accepted_training_without_a_job_id_is_503_not_a_crash(web: InProcessWeb) -> None:
    def malformed(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, json=["queued"])

    assert_error(web.ask(malformed, "POST", "/api/train/"), 503, "algorithm_unavailable")


def test_unknown_job_is_404_from_the_algorithm_service(web: InProcessWeb) -> None:
    def no_such_job(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "not_found", "detail": "No job nope."})

    assert_error(web.ask(no_such_job, "GET", "/api/train/nope/"), 404, "not_found")


def scores_by_length(request: httpx.Request) -> httpx.Response:
    """A trained algorithm service answering top_k: scores say how long each text is."""
    body = json.loads(request.content)
    assert set(body) in ({"text", "top_k"}, {"texts", "top_k"}), body

    def ranked(text: str) -> list[dict[str, Any]]:
        return [{"label": f"len{len(text)}", "score": 0.75}, {"label": "other", "score": 0.25}]

    if "text" in body:
        answer: dict[str, Any] = {
            "label": f"len{len(body['text'])}",
            "scores": ranked(body["text"])[: body["top_k"]],
        }
    else:
        answer = {
            "labels": [f"len{len(t)}" for t in body["texts"]],
            "scores": [ranked(t)[: body["top_k"]] for t in body["texts"]],
        }
    return httpx.Response(200, json={**answer, "model_version": "v7"})


def test_top_k_is_forwarded_and_the_scores_answered(web: InProcessWeb) -> None:
    one = web.ask(scores_by_length, "POST", "/api/predict/", json={"text": "abc", "top_k": 2})
    assert one.status_code == 200
    assert one.json() == {
        "label": "len3",
        "model_version": "v7",
        "scores": [{"label": "len3", "score": 0.75}, {"label": "other", "score": 0.25}],
    }
    many = web.ask(
        scores_by_length, "POST", "/api/predict/", json={"texts": ["a", "ab"], "top_k": 1.0}
    )
    assert many.status_code == 200
    assert many.json() == {
        "labels": ["len1", "len2"],
        "model_version": "v7",
        "scores": [[{"label": "len1", "score": 0.75}], [{"label": "len2", "score": 0.75}]],
    }


def test_without_top_k_nothing_is_forwarded_but_the_texts(web: InProcessWeb) -> None:
    sent: list[Any] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return labels_by_length(request)

    assert "scores" not in web.ask(record, "POST", "/api/predict/", json={"text": "abc"}).json()
    assert "scores" not in web.ask(record, "POST", "/api/predict/", json={"texts": ["a"]}).json()
    assert sent == [{"texts": ["abc"]}, {"texts": ["a"]}]


def test_concurrent_texts_with_top_k_are_not_merged_with_the_others(web: InProcessWeb) -> None:
    sent: list[Any] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        if "top_k" in sent[-1]:
            return scores_by_length(request)
        return labels_by_length(request)

    bodies = [{"text": "a" * n} if n % 2 else {"text": "a" * n, "top_k": 1} for n in range(1, 9)]
    answers = web.send(
        record,
        *({"method": "POST", "url": "/api/predict/", "json": body} for body in bodies),
        concurrently=True,
    )
    assert [answer.json()["label"] for answer in answers] == [f"len{n}" for n in range(1, 9)]
    assert ["scores" in answer.json() for answer in answers] == [n % 2 == 0 for n in range(1, 9)]
    with_top_k = sorted(body["text"] for body in sent if "top_k" in body)
    assert with_top_k == ["a" * n for n in (2, 4, 6, 8)]  # one call each, never coalesced
    plain = sorted(text for body in sent if "texts" in body for text in body["texts"])
    assert plain == ["a" * n for n in (1, 3, 5, 7)]


@pytest.mark.parametrize("top_k", [0, -1, 1.5, "3", True, None, [2]])
@pytest.mark.parametrize("shape", [{"text": "abc"}, {"texts": ["a", "b"]}])
def test_bad_top_k_is_400_without_a_call(
    web: InProcessWeb, top_k: Any, shape: dict[str, Any]
) -> None:
    response = web.ask(must_not_be_called, "POST", "/api/predict/", json={**shape, "top_k": top_k})
    error = assert_error(response, 400, "validation_error")
    assert "top_k" in error["fields"] and "top_k" in error["detail"]


def test_top_k_above_the_model_labels_is_409_with_the_services_reason(web: InProcessWeb) -> None:
    refusal = {
        "error": "validation_error",
        "detail": "top_k: must be at most 6, the labels of model v7.",
        "fields": {"top_k": ["must be at most 6, the labels of model v7"]},
    }

    def too_many(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json=refusal)

    response = web.ask(too_many, "POST", "/api/predict/", json={"text": "abc", "top_k": 7})
    error = assert_error(response, 409, "top_k_above_labels")
    assert error == {**refusal, "error": "top_k_above_labels"}


DEEP = 5_000  # levels: far beyond Python's recursion limit


@pytest.mark.parametrize(
    "content",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"texts": ' + b"[" * DEEP + b"]" * DEEP + b"}",
        b'{"text": "a", "top_k": ' + b'{"a": ' * DEEP + b"1" + b"}" * DEEP + b"}",
        b'{"texts": ' + b"[" * 40 + b"]" * 40 + b"}",  # deeper than any body needs
    ],
    ids=["lists", "texts", "objects", "40-levels"],
)
def test_json_nested_too_deep_is_400(web: InProcessWeb, content: bytes) -> None:
    json_type = {"Content-Type": "application/json"}
    response = web.ask(
        must_not_be_called, "POST", "/api/predict/", content=content, headers=json_type
    )
    assert "deep" in assert_error(response, 400, "invalid_json")["detail"]


def test_texts_over_the_total_characters_cap_are_413_before_the_hop(web: InProcessWeb) -> None:
    from web.config import get_settings

    limits = get_settings()
    count = limits.predict_max_total_chars // limits.predict_max_chars + 1
    texts = ["x" * limits.predict_max_chars] * count  # each text and their number allowed
    response = web.ask(must_not_be_called, "POST", "/api/predict/", json={"texts": texts})
    detail = assert_error(response, 413, "payload_too_large")["detail"]
    assert str(limits.predict_max_total_chars) in detail


def test_top_k_above_the_cap_is_400_before_the_hop(web: InProcessWeb) -> None:
    from web.config import get_settings

    too_many = get_settings().predict_max_top_k + 1
    response = web.ask(
        must_not_be_called, "POST", "/api/predict/", json={"text": "a", "top_k": too_many}
    )
    assert "top_k" in assert_error(response, 400, "validation_error")["fields"]
