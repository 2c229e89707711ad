"""`.ci/install-ops-tools` is idempotent and quiet; the deployment guide names only files
that exist, CLI commands of docs/REFERENCE.md §6, and the stack's real variables; no
file cites a contract outside the repository."""

from __future__ import annotations

import re
import shutil
import subprocess

from tests.deploy.files import (
    COMPOSE_PROD,
    DEPLOYMENT_DOC,
    ENV_PRODUCTION_EXAMPLE,
    INSTALL_OPS_TOOLS,
    REPO_ROOT,
    load_compose,
)

SPEC_COMMANDS = {
    "serve",
    "migrate",
    "create-tenant",
    "suspend-tenant",
    "resume-tenant",
    "create-key",
    "list-keys",
    "revoke-key",
    "set-limits",
    "grant-model",
    "revoke-model",
    "list-models",
    "discover-models",
    "usage",
    "purge",
}


def test_install_ops_tools_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(INSTALL_OPS_TOOLS)], capture_output=True)
    assert result.returncode == 0, result.stderr


def test_install_ops_tools_leaves_the_tools_installed_and_is_then_silent() -> None:
    # First run installs whatever is missing (quietly); the second must find all of it.
    first = subprocess.run(
        ["bash", str(INSTALL_OPS_TOOLS)], capture_output=True, text=True, timeout=900
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert shutil.which("caddy")
    assert shutil.which("systemd-analyze")
    assert shutil.which("prometheus")
    assert shutil.which("promtool")
    assert shutil.which("go")
    second = subprocess.run(
        ["bash", str(INSTALL_OPS_TOOLS)], capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0
    assert second.stdout == ""
    assert second.stderr == ""


def test_guide_names_only_files_that_exist() -> None:
    text = DEPLOYMENT_DOC.read_text()
    uses = re.search(r"The files this guide uses: (.+?)\.\n", text, flags=re.DOTALL)
    assert uses
    paths = set(re.findall(r"`([^`\s]+)`", uses.group(1)))
    paths |= set(re.findall(r"`((?:ops|docs|tests|\.ci)/[\w./-]+)`", text))
    assert {"Dockerfile", "docker-compose.yml", "ops/caddy/Caddyfile.example"} <= paths
    for path in paths:
        assert (REPO_ROOT / path).exists(), f"docs/DEPLOYMENT.md names missing {path}"


def test_guide_uses_only_cli_commands_of_the_spec() -> None:
    used = set(re.findall(r"neuronetz-gateway ([a-z][a-z-]+)", DEPLOYMENT_DOC.read_text()))
    assert {"create-tenant", "create-key"} <= used
    assert used <= SPEC_COMMANDS, used - SPEC_COMMANDS


def test_env_example_lists_every_variable_the_stack_reads() -> None:
    referenced = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE_PROD.read_text()))
    documented = set(
        re.findall(r"^#?([A-Z_]+)=", ENV_PRODUCTION_EXAMPLE.read_text(), flags=re.MULTILINE)
    )
    assert referenced <= documented, referenced - documented
    assert load_compose(COMPOSE_PROD)["services"]["gateway"]["env_file"][0]["path"] == ".env"


def test_no_file_cites_the_contract_outside_the_repository() -> None:
    """Comments and docs cite `docs/REFERENCE.md §n`, never a specification a maintainer
    does not have."""
    citation = re.compile(r"\bSPEC(\.md)? ?§")
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    citing = []
    for name in filter(None, tracked):
        path = REPO_ROOT / name.decode()
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        citing += [
            f"{name.decode()}:{n}"
            for n, line in enumerate(text.splitlines(), 1)
            if citation.search(line)
        ]
    assert citing == []
