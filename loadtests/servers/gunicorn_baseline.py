"""Baseline B: the published model behind a plain sync Flask view, the usual gunicorn setup.

The model is loaded once at import and predicted with scikit-learn's pipeline
(`predict_labels`), as most tutorials serve it.

    MODEL_DIR=var/models MODEL_SIGNING_KEY=$(cat var/model_signing_key) \
        gunicorn -w 2 -b 127.0.0.1:8102 loadtests.servers.gunicorn_baseline:app
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from algorithm.ml.artifacts import load_current_version
from algorithm.ml.signing import SigningKeys
from algorithm.ml.training import predict_labels
from core.settings import ModelSigning

SETTINGS = ModelSigning()
LOADED = load_current_version(
    SETTINGS.model_root, signing_keys=SigningKeys.from_secrets(SETTINGS.model_signing_key)
)

app = Flask(__name__)


@app.post("/predict")
def predict() -> tuple[dict[str, Any], int]:
    """`{"text"}` -> `{"label"}`, `{"texts"}` -> `{"labels"}`, both with the model version."""
    body = request.get_json(silent=True)
    if isinstance(body, dict) and isinstance(body.get("text"), str):
        label = predict_labels(LOADED.model, [body["text"]])[0]
        return {"label": label, "model_version": LOADED.version}, 200
    if isinstance(body, dict) and isinstance(body.get("texts"), list):
        labels = predict_labels(LOADED.model, body["texts"])
        return {"labels": labels, "model_version": LOADED.version}, 200
    return {"error": "invalid_body", "detail": 'send {"text": "..."} or {"texts": [...]}'}, 400
