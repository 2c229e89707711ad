"""Fixtures of the deployment tests: the image's environment and a gateway running from it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.image import build_image_environment
from tests.deploy.processes import (
    RunningGateway,
    free_port,
    gateway_environment,
    start_gateway,
    stop,
)


@pytest.fixture(scope="session")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The virtual environment the Dockerfile's builder stage produces."""
    if shutil.which("uv") is None:
        pytest.skip("uv is not installed")
    return build_image_environment(tmp_path_factory.mktemp("image"))


@pytest.fixture(scope="session")
def gateway(
    image_venv: Path, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """`neuronetz-gateway serve` from the image's environment, on a free loopback port."""
    env = gateway_environment(database_url, free_port())
    running = start_gateway(
        image_venv / "bin" / "neuronetz-gateway", env, tmp_path_factory.mktemp("gateway-cwd")
    )
    yield running
    stop(running.process)
