"""The GitHub Actions workflow runs what docs/REFERENCE.md §8 lists, against the services the test
suite expects, with the same uv as the Dockerfile."""

from __future__ import annotations

import re
from typing import Any

from tests.deploy.files import REPO_ROOT, dockerfile_stages, load_yaml

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"


def workflow() -> dict[str, Any]:
    return load_yaml(WORKFLOW)


def run_steps(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def test_lint_job_runs_every_static_check() -> None:
    steps = run_steps(workflow()["jobs"]["lint"])
    for check in (
        "ruff check src tests bench",
        "ruff format --check src tests bench",
        "uv run mypy",
        "bandit -c pyproject.toml -r src",
        "pip-audit",
        "uv sync --locked",
    ):
        assert check in steps, check


def test_tests_run_against_postgres_15_and_redis_7() -> None:
    job = workflow()["jobs"]["test"]
    assert job["services"]["postgres"]["image"].startswith("postgres:15")
    assert job["services"]["redis"]["image"].startswith("redis:7")
    # The variables tests/support/databases.py reads.
    assert job["env"]["NZ_TEST_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert job["env"]["NZ_TEST_DATABASE_URL"].endswith(":5432/test")
    assert job["env"]["NZ_TEST_REDIS_URL"].startswith("redis://")
    steps = run_steps(job)
    assert "bash .ci/install-ops-tools" in steps
    assert "uv run pytest" in steps


def test_tests_have_node_for_the_agent_clis() -> None:
    """Claude Code and Codex (tests/e2e/test_agent_clis.py) run on Node, from a cache
    keyed by the versions tests/support/agent_clis.py pins."""
    steps = workflow()["jobs"]["test"]["steps"]
    uses = [str(step.get("uses", "")) for step in steps]
    node = steps[next(i for i, u in enumerate(uses) if u.startswith("actions/setup-node@"))]
    assert int(node["with"]["node-version"]) >= 18
    cache = steps[next(i for i, u in enumerate(uses) if u.startswith("actions/cache@"))]
    assert cache["with"]["path"] == "~/.cache/neuronetz-gateway/agent-clis"
    assert "tests/support/agent_clis.py" in cache["with"]["key"]
    pytest_step = next(i for i, s in enumerate(steps) if "uv run pytest" in str(s.get("run")))
    assert uses.index(node["uses"]) < pytest_step


def test_workflow_uses_python_312_and_the_dockerfiles_uv() -> None:
    document = workflow()
    assert document["env"]["PYTHON_VERSION"] == "3.12"
    (uv_image,) = [s.image for s in dockerfile_stages() if "astral-sh/uv" in s.image]
    assert uv_image.endswith(":" + document["env"]["UV_VERSION"])
    for job in document["jobs"].values():
        for step in job["steps"]:
            uses = str(step.get("uses", ""))
            if uses:
                assert re.search(r"@v\d+$", uses), f"{uses} should be pinned to a major version"


def test_image_job_builds_and_waits_for_healthy() -> None:
    steps = run_steps(workflow()["jobs"]["image"])
    assert "docker build" in steps
    assert "State.Health.Status" in steps
    assert "docker compose" in steps
