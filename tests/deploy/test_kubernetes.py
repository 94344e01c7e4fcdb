"""deploy/k8s: every manifest validates against the Kubernetes API schemas
(kubernetes-validate, strict: unknown fields are errors) and the KEDA resources against a
schema written from KEDA's documented fields; then the manifests are checked against
each other and against the worker (roles, probes, ports, queue names, settings, drain)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ingest.bus.base import Q_PROCESS, Q_PROCESS_URGENT, Q_SINK_FEED, Q_SINK_STORE
from ingest.cli import build_parser
from ingest.runtime.push import WEBHOOK_PREFIX
from ingest.settings import RuntimeSettings, apply_env, settings_from_dict
from tests.deploy.helpers import DEPLOY, ROLES

K8S = DEPLOY / "k8s"
KEDA_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "keda.json").read_text())
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
NOT_APPLIED = {"kustomization.yaml", "secret.example.yaml"}


def documents(*names: str) -> list[dict[str, Any]]:
    files = [K8S / n for n in names] if names else sorted(K8S.glob("*.yaml"))
    docs = []
    for path in files:
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


def by_name(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_kind(kind)}


def deployment(role: str) -> dict[str, Any]:
    return by_name("Deployment")[f"feedback-ingest-{role}"]


def container(role: str) -> dict[str, Any]:
    (c,) = deployment(role)["spec"]["template"]["spec"]["containers"]
    return dict(c)


def test_kustomization_applies_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    shipped = {p.name for p in K8S.glob("*.yaml")} - NOT_APPLIED
    assert set(kustomization["resources"]) == shipped


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    checked = 0
    for doc in documents():
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 12


def test_strict_validation_would_catch_a_misspelt_field() -> None:
    doc = json.loads(json.dumps(deployment("processors")))
    doc["spec"]["template"]["spec"]["terminationGracePeriod"] = 60
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[0], strict=True)


def test_keda_resources_follow_the_documented_fields() -> None:
    keda = [d for d in documents() if d["apiVersion"].startswith("keda.sh/")]
    assert {d["kind"] for d in keda} == {"ScaledObject", "TriggerAuthentication"}
    for doc in keda:
        jsonschema.Draft202012Validator(KEDA_SCHEMA).validate(doc)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "minReplicas"), 1),  # HPA's name, not KEDA's
        (("spec", "triggers", 0, "metadata", "queueLength"), "5"),  # removed in KEDA 2.x
        (("spec", "triggers", 0, "metadata", "value"), 20),  # must be a string
    ],
)
def test_keda_schema_rejects_what_keda_would(path: tuple[Any, ...], value: Any) -> None:
    doc = json.loads(json.dumps(by_name("ScaledObject")["feedback-ingest-processors"]))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(KEDA_SCHEMA).validate(doc)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_runs_the_real_cli_with_probes_resources_and_a_long_enough_grace(
    role: str,
) -> None:
    c = container(role)
    args = build_parser().parse_args(c["args"])
    assert args.command == "run" and args.roles == role
    env = {e["name"]: e["value"] for e in c["env"]}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == int(env["FEEDBACK_HTTP__PORT"])
    # the roles behind a Service (and the Ingress) keep /metrics, /healthz and /readyz
    # on their own ops port, which no Service routes
    probed = "ops" if role in ("desk", "connectors") else "http"
    if probed == "ops":
        assert ports["ops"] == int(env["FEEDBACK_HTTP__OPS_PORT"]) != ports["http"]
    annotations = deployment(role)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports[probed])
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": probed}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": probed}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": probed}
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    pod = deployment(role)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > 2 * RuntimeSettings().drain_timeout_secs
    assert pod["securityContext"]["runAsNonRoot"] is True
    image_uid = re.search(r"^ARG UID=(\d+)$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert image_uid and pod["securityContext"]["runAsUser"] == int(image_uid[1])
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert str(Path(args.config).parent) in mounts
    assert {"/var/lib/feedback-ingest", "/var/cache/feedback-ingest", "/tmp"} <= mounts


def test_config_map_and_secret_make_valid_settings_in_broker_mode() -> None:
    (config_map,) = of_kind("ConfigMap")
    (secret,) = of_kind("Secret")
    doc = tomllib.loads(config_map["data"]["config.toml"])
    settings = settings_from_dict(apply_env(doc, secret["stringData"]))
    assert not settings.embedded and settings.redis.url and settings.store.url
    for role in ROLES:
        refs = {e["secretRef"]["name"] for e in container(role)["envFrom"]}
        assert refs == {secret["metadata"]["name"]}
        volumes = deployment(role)["spec"]["template"]["spec"]["volumes"]
        names = {v["configMap"]["name"] for v in volumes if "configMap" in v}
        assert names == {config_map["metadata"]["name"]}


def test_every_selector_and_reference_points_at_something_real() -> None:
    deployments = by_name("Deployment")
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]

    def selects(selector: dict[str, str]) -> int:
        return sum(1 for labels in pod_labels if selector.items() <= labels.items())

    pdbs = of_kind("PodDisruptionBudget")
    assert len(pdbs) == len(deployments)
    for pdb in pdbs:
        assert selects(pdb["spec"]["selector"]["matchLabels"]) == 1
    services = by_name("Service")
    for service in services.values():
        assert selects(service["spec"]["selector"]) == 1
    (ingress,) = of_kind("Ingress")
    paths = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            ports = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
            assert backend["port"]["name"] in ports
            paths[path["path"]] = backend["name"]
    webhooks = services[paths[WEBHOOK_PREFIX]]["spec"]["selector"]
    assert webhooks["app.kubernetes.io/component"] == "connectors"
    assert services[paths["/"]]["spec"]["selector"]["app.kubernetes.io/component"] == "desk"


def _queue_thresholds(scaled_object: dict[str, Any]) -> dict[str, float]:
    return {
        t["metadata"]["queueName"]: float(t["metadata"]["value"])
        for t in scaled_object["spec"]["triggers"]
    }


def test_keda_scales_processors_and_sinks_on_their_real_queues() -> None:
    scaled = by_name("ScaledObject")
    deployments = by_name("Deployment")
    for so in scaled.values():
        assert so["spec"]["scaleTargetRef"]["name"] in deployments
    processors = _queue_thresholds(scaled["feedback-ingest-processors"])
    assert set(processors) == {Q_PROCESS, Q_PROCESS_URGENT}
    assert processors[Q_PROCESS_URGENT] < processors[Q_PROCESS]
    assert set(_queue_thresholds(scaled["feedback-ingest-sinks"])) == {Q_SINK_FEED, Q_SINK_STORE}
    (auth,) = of_kind("TriggerAuthentication")
    (secret,) = of_kind("Secret")
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    for so in scaled.values():
        for trigger in so["spec"]["triggers"]:
            assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


def test_services_route_only_the_main_port_never_the_ops_port() -> None:
    for service in of_kind("Service"):
        targets = {p["targetPort"] for p in service["spec"]["ports"]}
        assert targets == {"http"}, service["metadata"]["name"]
