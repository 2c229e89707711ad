"""deploy/kubernetes: every overlay rendered by kustomize, every object valid against the
Kubernetes schemas, and the promises of docs/REFERENCE.md §13 held object by object."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import kubernetes_validate
import pytest

from neuronetz_gateway.audit.writer import SHUTDOWN_TIMEOUT_SECONDS
from tests.deploy.files import DOCKERFILE, dockerfile_stages
from tests.deploy.kubernetes import (
    CUSTOM_KINDS,
    KUBERNETES_DIR,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    Obj,
    Rendered,
    container,
    containers,
    env_sources,
    pod_labels,
    pod_spec,
    render,
    selects,
    validate,
)

SECRET_SETTINGS = ("DATABASE_URL", "REDIS_URL", "METRICS_TOKEN")
GATEWAY = "neuronetz-gateway"


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    overlay = str(request.param)
    return Rendered(overlay, render(KUBERNETES_DIR / "overlays" / overlay))


def gateway(rendered: Rendered) -> Obj:
    return rendered.one("Deployment", GATEWAY)


def ollama_pods(rendered: Rendered) -> list[Obj]:
    return [w for w in rendered.workloads() if pod_labels(w)["app.kubernetes.io/name"] == "ollama"]


# --- schemas ---------------------------------------------------------------------------


def test_every_object_is_valid_against_the_kubernetes_schemas(rendered: Rendered) -> None:
    kinds = set()
    for obj in rendered.objects:
        kinds.add(obj["kind"])
        if obj["kind"] in CUSTOM_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            validate(obj, version)
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"Job", "NetworkPolicy", "ConfigMap", "ServiceAccount"} <= kinds


def test_the_validator_refuses_what_kubernetes_would() -> None:
    """The schema check above can fail: a misspelt field or a wrong type is refused."""
    deployment = render(KUBERNETES_DIR / "overlays" / "default")
    original = next(obj for obj in deployment if obj["kind"] == "Deployment")
    misspelt = copy.deepcopy(original)
    pod_spec(misspelt)["terminationGracePeriod"] = 60
    wrong_type = copy.deepcopy(original)
    wrong_type["spec"]["replicas"] = "two"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            validate(broken, KUBERNETES_VERSIONS[-1])


# --- the gateway's pods ----------------------------------------------------------------


def test_probes_readiness_on_readyz_liveness_on_healthz(rendered: Rendered) -> None:
    main = container(gateway(rendered), "gateway")
    port = rendered.config()["GATEWAY_PORT"]
    (http,) = main["ports"]
    assert (http["name"], str(http["containerPort"])) == ("http", port)
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # A slow start is the startup probe's business, not a liveness kill.
    assert main["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_termination_grace_covers_prestop_drain_and_audit_flush(rendered: Rendered) -> None:
    deployment = gateway(rendered)
    main = container(deployment, "gateway")
    command = main["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = int(command[1])
    assert pause >= 3, "endpoints must drop the pod before it stops accepting"
    grace = int(rendered.config()["SHUTDOWN_GRACE_SECONDS"])
    needed = pause + grace + SHUTDOWN_TIMEOUT_SECONDS
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > needed
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > grace


def test_every_container_has_requests_and_a_memory_limit(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        for item in containers(workload):
            resources = item["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), item["name"]
            assert "memory" in resources["limits"], item["name"]


def test_workers_auto_meets_a_cpu_limit(rendered: Rendered) -> None:
    """GATEWAY_WORKERS=auto counts the CPUs of the pod's limit (its cgroup quota)."""
    assert rendered.config()["GATEWAY_WORKERS"] == "auto"
    limits = container(gateway(rendered), "gateway")["resources"]["limits"]
    assert int(limits["cpu"]) >= 1


def test_pods_run_non_root_on_a_read_only_root(rendered: Rendered) -> None:
    (runtime,) = dockerfile_stages(DOCKERFILE)[-1:]
    image_user = runtime.all("USER")[-1].arguments.split(":")[0]
    for workload in rendered.workloads():
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        if pod_labels(workload)["app.kubernetes.io/name"] == GATEWAY:
            assert str(pod["securityContext"]["runAsUser"]) == image_user
        for item in containers(workload):
            security = item["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, item["name"]
            assert security["allowPrivilegeEscalation"] is False, item["name"]
            assert security["capabilities"]["drop"] == ["ALL"], item["name"]
        mounted = {m["name"] for c in containers(workload) for m in c.get("volumeMounts", [])}
        declared = {v["name"] for v in pod.get("volumes", [])}
        claimed = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        assert mounted <= declared | claimed


def test_secrets_come_from_the_secret_only(rendered: Rendered) -> None:
    assert rendered.of_kind("Secret") == [], "secrets are never in these files"
    config = rendered.config()
    assert not set(SECRET_SETTINGS) & set(config)
    deployment = gateway(rendered)
    for name in SECRET_SETTINGS:
        reference = env_sources(container(deployment, "gateway"))[name]["valueFrom"]
        assert reference["secretKeyRef"]["name"] == GATEWAY
        assert reference["secretKeyRef"]["key"] == name
        assert reference["secretKeyRef"].get("optional") is not True
    listen = env_sources(container(deployment, "gateway"))["DATABASE_LISTEN_URL"]
    assert listen["valueFrom"]["secretKeyRef"]["optional"] is True
    for workload in rendered.workloads():
        for item in containers(workload):
            assert all(
                "value" not in e for e in item.get("env", []) if e["name"] in SECRET_SETTINGS
            )


# --- availability ----------------------------------------------------------------------


def test_disruption_budget_and_autoscaler_cover_the_gateway(rendered: Rendered) -> None:
    deployment = gateway(rendered)
    budget = rendered.one("PodDisruptionBudget", GATEWAY)
    assert selects(budget["spec"]["selector"]["matchLabels"], pod_labels(deployment))
    assert budget["spec"]["maxUnavailable"] == 1
    autoscaler = rendered.one("HorizontalPodAutoscaler", GATEWAY)
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": GATEWAY,
    }
    assert autoscaler["spec"]["minReplicas"] >= 2, "one pod cannot be drained without an outage"
    assert autoscaler["spec"]["maxReplicas"] > autoscaler["spec"]["minReplicas"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_service_is_internal_and_selects_the_gateway(rendered: Rendered) -> None:
    service = rendered.one("Service", GATEWAY)
    assert service["spec"]["type"] == "ClusterIP"
    assert selects(service["spec"]["selector"], pod_labels(gateway(rendered)))
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"


# --- migrations --------------------------------------------------------------------------


def test_one_migration_job_per_release_and_pods_wait_for_it(rendered: Rendered) -> None:
    deployment = gateway(rendered)
    image = container(deployment, "gateway")["image"]
    tag = image.rsplit(":", 1)[1]
    (job,) = rendered.of_kind("Job")
    name = job["metadata"]["name"]
    assert name == f"{GATEWAY}-migrate-{tag}", "a new release must get a new Job"
    assert len(name) <= 63, "the Job's name becomes a label value"
    (migrate,) = pod_spec(job)["containers"]
    assert migrate["image"] == image
    assert migrate["command"] == [GATEWAY, "migrate"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    # Pods do not migrate: they wait until the Job has brought the schema to their head.
    assert container(deployment, "gateway")["command"] == [GATEWAY, "serve", "--skip-migrations"]
    (wait,) = pod_spec(deployment)["initContainers"]
    assert wait["image"] == image
    assert wait["command"][:3] == [GATEWAY, "check-schema", "--wait"]
    assert int(wait["command"][3]) <= job["spec"]["activeDeadlineSeconds"]


# --- Ollama --------------------------------------------------------------------------------


def test_only_gateway_pods_reach_ollama(rendered: Rendered) -> None:
    workloads = ollama_pods(rendered)
    if rendered.overlay == "external-ollama":
        assert workloads == []
        return
    (ollama,) = workloads
    labels = pod_labels(ollama)
    policies = [
        p
        for p in rendered.of_kind("NetworkPolicy")
        if selects(p["spec"]["podSelector"]["matchLabels"], labels)
    ]
    (policy,) = policies
    assert "Ingress" in policy["spec"]["policyTypes"]
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}, "no namespaceSelector or ipBlock: this namespace only"
    allowed = peer["podSelector"]["matchLabels"]
    assert selects(allowed, pod_labels(gateway(rendered)))
    others = [w for w in rendered.workloads() if w is not gateway(rendered)]
    assert others, "the migration Job and Ollama itself exist"
    for other in others:
        assert not selects(allowed, pod_labels(other)), other["metadata"]["name"]


def test_no_service_is_published_outside_the_cluster(rendered: Rendered) -> None:
    for service in rendered.of_kind("Service"):
        assert service["spec"].get("type", "ClusterIP") not in ("LoadBalancer", "NodePort")
        assert "externalIPs" not in service["spec"]
    for workload in ollama_pods(rendered):
        pod = pod_spec(workload)
        assert not pod.get("hostNetwork")
        assert all("hostPort" not in p for c in containers(workload) for p in c.get("ports", []))


def test_ollama_is_where_the_gateway_looks(rendered: Rendered) -> None:
    config = rendered.config()
    urls = [u for u in config.get("OLLAMA_BASE_URLS", "").split(",") if u] or [
        config["OLLAMA_BASE_URL"]
    ]
    if rendered.overlay == "external-ollama":
        assert all(".ollama:" not in url and "//ollama:" not in url for url in urls)
        return
    (ollama,) = ollama_pods(rendered)
    service = rendered.one("Service", "ollama")
    assert service["spec"]["clusterIP"] == "None"
    assert ollama["spec"]["serviceName"] == "ollama"
    replicas = ollama["spec"]["replicas"]
    expected = {f"http://ollama-{i}.ollama:11434" for i in range(replicas)}
    assert set(urls) == expected or urls == ["http://ollama:11434"]


def test_production_runs_ollama_on_gpus() -> None:
    production = Rendered("production", render(KUBERNETES_DIR / "overlays" / "production"))
    (ollama,) = ollama_pods(production)
    main = container(ollama, "ollama")
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert ollama["spec"]["replicas"] >= 2
    assert production.one("HorizontalPodAutoscaler", GATEWAY)["spec"]["minReplicas"] >= 3


# --- monitoring ------------------------------------------------------------------------------


def test_service_monitor_scrapes_metrics_with_the_token() -> None:
    production = Rendered("production", render(KUBERNETES_DIR / "overlays" / "production"))
    monitor = production.one("ServiceMonitor", GATEWAY)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = production.one("Service", GATEWAY)
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": GATEWAY, "key": "METRICS_TOKEN"},
    }
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}


def test_ingress_routes_the_api_but_not_metrics_or_readiness() -> None:
    production = Rendered("production", render(KUBERNETES_DIR / "overlays" / "production"))
    (ingress,) = production.of_kind("Ingress")
    paths = {
        (p["path"], p["pathType"])
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    assert paths == {("/api/", "Prefix"), ("/v1/", "Prefix"), ("/healthz", "Exact"), ("/", "Exact")}
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


# --- the overlay an operator copies -------------------------------------------------------------


def test_a_new_image_tag_names_a_new_migration_job(tmp_path: Path) -> None:
    """What an operator does at each release: edit newTag; the Job follows."""
    copied = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES_DIR, copied)
    kustomization = copied / "overlays" / "production" / "kustomization.yaml"
    text = kustomization.read_text()
    assert len(re.findall(r'newTag: "[^"]+"', text)) == 1
    kustomization.write_text(re.sub(r'newTag: "[^"]+"', 'newTag: "0.7.2"', text))
    release = Rendered("production", render(copied / "overlays" / "production"))
    (job,) = release.of_kind("Job")
    assert job["metadata"]["name"] == f"{GATEWAY}-migrate-0.7.2"
    assert container(gateway(release), "gateway")["image"].endswith(":0.7.2")
