"""What `make bench` serves: a model trained on Debian package descriptions, and request bodies.

The model is trained on 6 400 descriptions (as in the spec's measurements) and published with
`publish_model_version`; the bodies are descriptions drawn from the whole corpus (about one in
ten was also a training row), so the servers see mostly unseen texts.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from algorithm.ml.artifacts import publish_model_version
from algorithm.ml.signing import SigningKeys
from algorithm.ml.training import TrainedModel, train_model
from loadtests.corpus import CorpusUnavailableError, load_debian_corpus, sample_rows

TRAIN_ROWS = 6_400
SINGLE_BODIES = 2_000
BATCH_BODIES = 16
# Signs what this bench process publishes; the servers it starts get it as MODEL_SIGNING_KEY.
SIGNING_KEY = secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Bodies:
    """One JSON body per line, in a file wrk reads; `texts` texts in each."""

    path: Path
    texts: int

    def lines(self) -> list[bytes]:
        return self.path.read_bytes().splitlines()


def load_corpus() -> list[tuple[str, str]]:
    """The Debian descriptions; runs `apt-get update` once when apt has no package lists."""
    try:
        return load_debian_corpus()
    except CorpusUnavailableError:
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            raise
        print("apt has no package lists: running apt-get update", flush=True)
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
        return load_debian_corpus()


Trained = tuple[TrainedModel, dict[str, Any]]


def train(corpus: list[tuple[str, str]], *, seed: int) -> Trained:
    """Train on TRAIN_ROWS rows of the corpus sampled with `seed`."""
    texts, labels = zip(*sample_rows(corpus, TRAIN_ROWS, seed=seed), strict=True)
    return train_model(list(texts), list(labels), seed=seed)


def publish(
    model_root: Path,
    trained: tuple[TrainedModel, dict[str, Any]],
    *,
    seed: int,
    named: bool = False,
) -> str:
    """Publish a model from `train` and return its version id.

    `named`: a version of a model other than `default`, served from its announced desired state
    only: `current` stays where it is and nothing older is pruned.
    """
    model, metrics = trained
    manifest = publish_model_version(
        model_root,
        model,
        metrics=dict(metrics),
        rows=TRAIN_ROWS,
        fingerprint={"source": "debian package descriptions", "sample_seed": seed},
        signing_keys=SigningKeys.from_secrets([SIGNING_KEY]),
        make_current=not named,
        retention=None if named else 5,
    )
    return str(manifest["version"])


def write_bodies(
    corpus: list[tuple[str, str]],
    work_dir: Path,
    *,
    texts: int,
    top_k: int | None = None,
    protocol: str = "native",
    model: str | None = None,
) -> Bodies:
    """Bodies of `texts` texts each: 2 000 single texts, or 16 batches; `top_k` in each if given,
    `"model": model` too if given (a named model; native bodies only).

    The texts depend on `texts` only, so bodies with and without `top_k` or `model`, and the Open
    Inference Protocol's (`protocol="v2"`: a BYTES input, `label` asked for), ask about the same
    texts.
    """
    rng = random.Random(3 + texts)
    bodies: list[dict[str, Any]]
    if texts == 1:
        bodies = [{"text": text} for text, _ in rng.sample(corpus, SINGLE_BODIES)]
    else:
        bodies = [
            {"texts": [text for text, _ in rng.sample(corpus, texts)]} for _ in range(BATCH_BODIES)
        ]
    if top_k is not None:
        bodies = [{**body, "top_k": top_k} for body in bodies]
    if model is not None:
        bodies = [{"model": model, **body} for body in bodies]
    if protocol == "v2":
        bodies = [_inference_request(body.get("texts") or [body["text"]]) for body in bodies]
    name = f"bodies-{texts}" + ("" if top_k is None else f"-top{top_k}")
    name += "" if model is None else f"-{model}"
    path = work_dir / (name + ("" if protocol == "native" else f"-{protocol}") + ".jsonl")
    path.write_text("".join(json.dumps(body) + "\n" for body in bodies))
    return Bodies(path, texts)


def _inference_request(texts: list[str]) -> dict[str, Any]:
    text = {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}
    return {"inputs": [text], "outputs": [{"name": "label"}]}
