"""The Dockerfile keeps its promises (REFERENCE.md §8): lint rules as code, and its build steps and
HEALTHCHECK exercised on the host, since no Docker engine runs here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.files import (
    Stage,
    dockerfile_healthcheck,
    dockerfile_stages,
    in_build_context,
    run_command,
)
from tests.deploy.image import builder_stage, installed_distributions, locked_runtime_packages
from tests.deploy.processes import RunningGateway, free_port

VERSIONED_TAG = re.compile(r"^[^:@\s]+:(v?\d+\.\d+(\.\d+)?)([-.][A-Za-z0-9._-]+)?$")


def test_build_is_multi_stage_with_a_slim_python_312_runtime() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert re.fullmatch(r"python:3\.12\.\d+-slim(-\w+)?", stages[-1].image), stages[-1].image


@pytest.mark.parametrize("stage", dockerfile_stages(), ids=lambda s: s.name or s.image)
def test_every_base_image_is_pinned_to_a_version(stage: Stage) -> None:
    image = stage.image
    assert ":latest" not in image
    assert VERSIONED_TAG.match(image), f"{image} is not pinned to a version"


def test_runtime_runs_as_a_fixed_unprivileged_uid() -> None:
    runtime = dockerfile_stages()[-1]
    users = runtime.all("USER")
    assert users, "the runtime stage sets no USER (it would run as root)"
    uid, _, gid = users[-1].arguments.partition(":")
    assert uid.isdigit(), "USER should be numeric, so runtimes can verify it is not root"
    assert int(uid) >= 1000
    assert not gid or (gid.isdigit() and int(gid) != 0)
    keywords = [i.keyword for i in runtime.instructions]
    assert keywords.index("USER") < keywords.index("CMD")


def test_builder_installs_from_the_lock_file_without_dev_dependencies() -> None:
    syncs = [run_command(r) for r in builder_stage().all("RUN") if "uv sync" in r.arguments]
    assert syncs
    for command in syncs:
        assert "--frozen" in command or "--locked" in command
        assert "--no-dev" in command
        assert "--no-editable" in command


def test_uv_is_pinned_to_a_version() -> None:
    images = [s.image for s in dockerfile_stages() if "astral-sh/uv" in s.image]
    copies = [
        i.arguments
        for s in dockerfile_stages()
        for i in s.all("COPY")
        if "astral-sh/uv" in i.arguments
    ]
    assert images or copies, "uv should come from a pinned astral-sh/uv image"
    for reference in images + copies:
        assert re.search(r"astral-sh/uv:\d+\.\d+\.\d+", reference), reference


def test_runtime_stage_has_no_build_tooling() -> None:
    runtime = dockerfile_stages()[-1]
    text = " ".join(i.arguments for i in runtime.instructions)
    # Compilers, headers and installers belong to the builder stage.
    forbidden = r"\b(build-essential|gcc|g\+\+|clang|make|[\w.+-]+-dev|uv|pip install)\b"
    assert not re.search(forbidden, text), re.search(forbidden, text)
    copies = [c.arguments for c in runtime.all("COPY")]
    assert all("--from=" in c for c in copies), "the runtime takes files only from stages"


def test_runtime_listens_on_all_interfaces_and_serves() -> None:
    runtime = dockerfile_stages()[-1]
    assert runtime.env().get("GATEWAY_HOST") == "0.0.0.0"
    (cmd,) = runtime.all("CMD")
    assert json.loads(cmd.arguments) == ["neuronetz-gateway", "serve"]
    assert not runtime.all("ENTRYPOINT")


def test_healthcheck_probes_healthz() -> None:
    command = dockerfile_healthcheck()
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("pyproject.toml", True),
        ("uv.lock", True),
        ("src/neuronetz_gateway/app.py", True),
        ("src/neuronetz_gateway/migrations/script.py.mako", True),
        (".env", False),
        ("src/neuronetz_gateway/.env", False),
        (".git/config", False),
        (".venv/bin/python", False),
        ("tests/conftest.py", False),
        ("src/neuronetz_gateway/__pycache__/app.cpython-312.pyc", False),
        ("docs/DEPLOYMENT.md", False),
    ],
)
def test_dockerignore_sends_only_what_the_build_needs(path: str, sent: bool) -> None:
    assert in_build_context(path) is sent


def test_builder_steps_produce_exactly_the_locked_runtime_packages(image_venv: Path) -> None:
    installed = installed_distributions(image_venv)
    assert installed == locked_runtime_packages() | {"neuronetz-gateway"}
    result = subprocess.run(
        [str(image_venv / "bin" / "python"), "-c", "import pytest"],
        capture_output=True,
        check=False,
    )
    assert result.returncode != 0, "pytest is importable in the image's environment"


def test_installed_cli_finds_its_packaged_migrations(image_venv: Path) -> None:
    result = subprocess.run(
        [str(image_venv / "bin" / "neuronetz-gateway"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "serve" in result.stdout
    versions = list(
        image_venv.glob("lib/python3.12/site-packages/neuronetz_gateway/migrations/*/*.py")
    )
    assert any(v.name.startswith("0001_") for v in versions)


def run_healthcheck(port: int, **extra_env: str) -> int:
    """The image's HEALTHCHECK command, run by this Python with the image's variables."""
    command = dockerfile_healthcheck()
    env = {"PATH": "/usr/bin:/bin", "GATEWAY_PORT": str(port), **extra_env}
    result = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
    )
    return result.returncode


def test_healthcheck_passes_against_a_serving_gateway(gateway: RunningGateway) -> None:
    assert run_healthcheck(gateway.port) == 0


def test_healthcheck_ignores_proxies_from_the_environment(gateway: RunningGateway) -> None:
    # A proxy variable in the container must not send the probe elsewhere.
    assert run_healthcheck(gateway.port, http_proxy="http://127.0.0.1:9") == 0


def test_healthcheck_fails_when_nothing_listens() -> None:
    assert run_healthcheck(free_port()) != 0


def test_dockerfile_has_no_add_and_no_secrets_in_env() -> None:
    for stage in dockerfile_stages():
        assert not stage.all("ADD"), "use COPY; ADD fetches URLs and unpacks archives"
        for key in stage.env():
            assert not re.search(r"PASSWORD|SECRET|TOKEN", key), f"{key} baked into the image"
