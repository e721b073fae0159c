"""Model files, atomic publication, retention and verified loading (algorithm.ml.artifacts)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from algorithm.ml import artifacts
from algorithm.ml.artifacts import (
    CLASSIFIER_FILE,
    VECTORIZER_FILE,
    ArtifactError,
    NoPublishedModel,
    current_signature,
    load_current_version,
    load_model,
    publish_model_version,
    save_model,
    sha256_of,
)
from algorithm.ml.signing import SigningKeys
from algorithm.ml.training import (
    FastPredictor,
    TrainedModel,
    fit_model,
    predict_labels,
    train_model,
)
from algorithm.ml.tuning import TrainingPlan
from tests.algorithm.registry_helpers import forge

TEXTS = [
    "Python bindings for the image library",
    "Python module for parsing dates",
    "Python test runner plugin",
    "Python interface to the database",
    "Perl module for parsing dates",
    "Perl interface to the database",
    "Perl extension for image handling",
    "Perl test helpers for modules",
]
LABELS = ["python"] * 4 + ["perl"] * 4
KEYS_TEXT = ["the key the worker and the algorithm service hold"]
KEYS = SigningKeys.from_secrets(KEYS_TEXT)


@pytest.fixture(scope="module")
def model() -> TrainedModel:
    return train_model(TEXTS, LABELS)[0]


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    return tmp_path / "models"


def publish(model_root: Path, model: TrainedModel, **overrides) -> dict:
    arguments = {
        "metrics": {"accuracy": 1.0},
        "fingerprint": {"rows": len(TEXTS), "max_id": 8},
        "rows": len(TEXTS),
        "signing_keys": KEYS,
        **overrides,
    }
    return publish_model_version(model_root, model, **arguments)


def visible_entries(model_root: Path) -> list[str]:
    return sorted(name for name in os.listdir(model_root) if not name.startswith("."))


def test_publish_creates_version_manifest_and_relative_current_link(model_root, model):
    manifest = publish(model_root, model)
    version = manifest["version"]
    assert visible_entries(model_root) == sorted([version, "current"])
    assert os.readlink(model_root / "current") == version  # relative: the volume can move
    on_disk = json.loads((model_root / version / "manifest.json").read_text())
    assert on_disk.pop("signature")["scheme"] == "hmac-sha256"
    assert on_disk == manifest
    assert manifest["rows"] == 8 and manifest["labels"] == ["perl", "python"]
    assert manifest["metrics"] == {"accuracy": 1.0}
    assert manifest["fingerprint"] == {"rows": 8, "max_id": 8}
    assert manifest["created_at"].endswith("Z")
    assert set(manifest["sha256"]) == {CLASSIFIER_FILE, VECTORIZER_FILE}
    assert set(manifest["library_versions"]) == {"python", "scikit-learn", "numpy", "scipy"}


def test_load_current_version_returns_the_published_model(model_root, model):
    manifest = publish(model_root, model)
    loaded = load_current_version(model_root, signing_keys=KEYS)
    assert loaded.version == manifest["version"]
    assert loaded.manifest == manifest
    assert loaded.model.labels == ["perl", "python"]


def test_versions_sort_in_publication_order(model_root, model):
    versions = [publish(model_root, model)["version"] for _ in range(3)]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3
    assert load_current_version(model_root, signing_keys=KEYS).version == versions[-1]


def test_no_current_is_no_model(model_root):
    model_root.mkdir()
    assert current_signature(model_root) is None
    with pytest.raises(NoPublishedModel, match="train one first"):
        load_current_version(model_root, signing_keys=KEYS)


def test_signature_changes_on_publish(model_root, model):
    publish(model_root, model)
    first = current_signature(model_root)
    assert first is not None
    publish(model_root, model)
    assert current_signature(model_root) != first


def test_retention_prunes_old_versions_but_never_current(model_root, model):
    versions = [publish(model_root, model, retention=2)["version"] for _ in range(4)]
    assert visible_entries(model_root) == sorted(versions[-2:] + ["current"])
    assert load_current_version(model_root, signing_keys=KEYS).version == versions[-1]


def test_prune_keeps_current_even_with_zero_retention(model_root, model):
    old = publish(model_root, model)["version"]
    publish(model_root, model)
    artifacts.switch_current(model_root, old)
    artifacts.prune_versions(model_root, retention=0)
    assert visible_entries(model_root) == sorted([old, "current"])


def test_failed_save_publishes_nothing(model_root, model):
    before = publish(model_root, model)["version"]
    unpicklable = TrainedModel(model.vectorizer, lambda: None)
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails, whatever the type
        publish(model_root, unpicklable)
    assert sorted(os.listdir(model_root)) == sorted([before, "current"])
    assert load_current_version(model_root, signing_keys=KEYS).version == before


def test_failed_link_switch_publishes_nothing(model_root, model, monkeypatch):
    before = publish(model_root, model)["version"]

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        publish(model_root, model)
    assert sorted(os.listdir(model_root)) == sorted([before, "current"])
    assert load_current_version(model_root, signing_keys=KEYS).version == before


@pytest.mark.parametrize("target", ["..", "../elsewhere", "/tmp", "current", ".tmp-x"])
def test_loader_refuses_current_outside_model_root(model_root, model, tmp_path, target):
    publish(model_root, model)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    (model_root / ".tmp-x").mkdir()
    os.unlink(model_root / "current")
    os.symlink(target, model_root / "current")
    with pytest.raises(ArtifactError):
        load_current_version(model_root, signing_keys=KEYS)


def test_loader_refuses_symlinked_version_outside_root(model_root, model, tmp_path):
    version = publish(model_root, model)["version"]
    outside = tmp_path / "outside" / version
    outside.parent.mkdir()
    (model_root / version).rename(outside)
    os.symlink(outside, model_root / version)
    with pytest.raises(ArtifactError, match="outside"):
        load_current_version(model_root, signing_keys=KEYS)


def test_loader_refuses_bad_checksum_and_bad_manifest(model_root, model):
    version = publish(model_root, model)["version"]
    pickle_path = model_root / version / CLASSIFIER_FILE
    pickle_path.write_bytes(pickle_path.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match="sha256"):
        load_current_version(model_root, signing_keys=KEYS)
    (model_root / version / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="manifest"):
        load_current_version(model_root, signing_keys=KEYS)
    (model_root / version / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest"):
        load_current_version(model_root, signing_keys=KEYS)


def test_reader_never_sees_a_half_published_version(model_root, model):
    publish(model_root, model)
    errors: list[BaseException] = []
    done = threading.Event()

    def read_repeatedly() -> None:
        while not done.is_set():
            try:
                loaded = load_current_version(model_root, signing_keys=KEYS)
                assert loaded.manifest["version"] == loaded.version
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    try:
        for _ in range(15):
            publish(model_root, model, retention=50)
    finally:
        done.set()
        reader.join()
    assert errors == []


def test_save_and_load_round_trip(model, tmp_path):
    checksums = save_model(model, tmp_path)
    assert sorted(checksums) == [CLASSIFIER_FILE, VECTORIZER_FILE]
    loaded = load_model(tmp_path, expected_sha256=checksums)
    texts = TEXTS + ["an unseen text about dates"]
    assert predict_labels(loaded, texts) == predict_labels(model, texts)


def test_checksum_mismatch_is_refused_before_unpickling(model, tmp_path, monkeypatch):
    checksums = save_model(model, tmp_path)
    (tmp_path / CLASSIFIER_FILE).write_bytes(b"not the pickle the manifest promised")
    monkeypatch.setattr("pickle.loads", lambda data: pytest.fail("unpickled unverified bytes"))
    with pytest.raises(ArtifactError, match="sha256"):
        load_model(tmp_path, expected_sha256=checksums)


def test_truncated_pickle_is_refused(model, tmp_path):
    checksums = save_model(model, tmp_path)
    path = tmp_path / VECTORIZER_FILE
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="sha256"):
        load_model(tmp_path, expected_sha256=checksums)


def test_truncated_pickle_with_matching_checksum_fails_cleanly(model, tmp_path):
    checksums = save_model(model, tmp_path)
    path = tmp_path / VECTORIZER_FILE
    path.write_bytes(path.read_bytes()[:100])
    checksums[VECTORIZER_FILE] = sha256_of(path.read_bytes())
    with pytest.raises(ArtifactError, match="does not unpickle"):
        load_model(tmp_path, expected_sha256=checksums)


def test_missing_file_is_an_integrity_error(model, tmp_path):
    checksums = save_model(model, tmp_path)
    (tmp_path / CLASSIFIER_FILE).unlink()
    with pytest.raises(ArtifactError, match="cannot read"):
        load_model(tmp_path, expected_sha256=checksums)


def test_a_words_and_characters_model_round_trips(tmp_path):
    plan = TrainingPlan(2, 1, "liblinear", 1.0, None, characters=True)
    model = fit_model(TEXTS, LABELS, plan=plan)
    loaded = load_model(tmp_path, expected_sha256=save_model(model, tmp_path))
    texts = TEXTS + ["an unseen text about dates", "pythonic perlish"]
    assert predict_labels(loaded, texts) == predict_labels(model, texts)
    assert FastPredictor(loaded).predict_many(texts) == predict_labels(model, texts)


@pytest.mark.parametrize(
    "vectorizer",
    [
        FeatureUnion([("words", TfidfVectorizer()), ("counts", CountVectorizer())]),
        FeatureUnion(
            [("words", TfidfVectorizer()), ("more", TfidfVectorizer())],
            transformer_weights={"words": 2.0, "more": 1.0},
        ),
    ],
    ids=["not tf-idf", "weighted"],
)
def test_features_the_predictor_cannot_serve_are_refused(model, tmp_path, vectorizer):
    vectorizer.fit(TEXTS)
    checksums = save_model(TrainedModel(vectorizer, model.classifier), tmp_path)
    with pytest.raises(ArtifactError, match="does not hold a fitted vectorizer"):
        load_model(tmp_path, expected_sha256=checksums)


# Signed manifests: whoever can write the volume cannot choose what a replica unpickles.


@pytest.mark.parametrize(
    ("sign_with", "reason", "says"),
    [
        (None, "unsigned", "not signed"),
        (SigningKeys.from_secrets(["a key that is not the service's key"]), "unknown_key", "key"),
    ],
    ids=["unsigned", "another key"],
)
def test_a_version_changed_with_a_new_manifest_is_refused_before_unpickling(
    model_root, model, monkeypatch, sign_with, reason, says
):
    version = publish(model_root, model)["version"]
    other = TrainedModel(model.vectorizer, train_model(TEXTS, LABELS[::-1])[0].classifier)
    forge(model_root, version, other, sign_with=sign_with)
    monkeypatch.setattr("pickle.loads", lambda data: pytest.fail("unpickled untrusted bytes"))
    with pytest.raises(ArtifactError, match=says) as refused:
        load_current_version(model_root, signing_keys=KEYS)
    assert refused.value.reason == reason
    assert version in str(refused.value)


def test_a_signed_manifest_edited_on_the_volume_is_refused(model_root, model):
    version = publish(model_root, model)["version"]
    path = model_root / version / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["sha256"][CLASSIFIER_FILE] = sha256_of(b"the attacker's pickle")
    path.write_text(json.dumps(manifest))  # the signature is kept, the content is not
    with pytest.raises(ArtifactError, match="does not match its content") as refused:
        load_current_version(model_root, signing_keys=KEYS)
    assert refused.value.reason == "bad_signature"


def test_a_changed_pickle_under_a_signed_manifest_is_refused(model_root, model):
    version = publish(model_root, model)["version"]
    (model_root / version / CLASSIFIER_FILE).write_bytes(b"not the pickle that was signed")
    with pytest.raises(ArtifactError, match="sha256") as refused:
        load_current_version(model_root, signing_keys=KEYS)
    assert refused.value.reason == "sha256_mismatch"


def test_rotation_signs_with_the_first_key_and_verifies_with_any(model_root, model):
    old = publish(model_root, model)["version"]
    rotated = SigningKeys.from_secrets(["the new key of the worker and the service", *KEYS_TEXT])
    new = publish(model_root, model, signing_keys=rotated, retention=50)["version"]
    assert load_current_version(model_root, signing_keys=rotated).version == new
    artifacts.switch_current(model_root, old)
    assert load_current_version(model_root, signing_keys=rotated).version == old  # old key
    artifacts.switch_current(model_root, new)
    with pytest.raises(ArtifactError) as refused:  # the new key is not among the old ones
        load_current_version(model_root, signing_keys=KEYS)
    assert refused.value.reason == "unknown_key"
