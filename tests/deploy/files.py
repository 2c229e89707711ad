"""Readers for the deployment files: Dockerfile, .dockerignore, compose files, systemd units.

Small, strict parsers: just enough of each format to hold the files to their promises
without a Docker engine or a running systemd.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
COMPOSE_PROD = REPO_ROOT / "docker-compose.yml"
COMPOSE_DEV = REPO_ROOT / "docker-compose.dev.yml"
CADDYFILE = REPO_ROOT / "ops" / "caddy" / "Caddyfile.example"
SYSTEMD_UNIT = REPO_ROOT / "ops" / "systemd" / "neuronetz-gateway.service"
INSTALL_OPS_TOOLS = REPO_ROOT / ".ci" / "install-ops-tools"
ENV_PRODUCTION_EXAMPLE = REPO_ROOT / ".env.production.example"
DEPLOYMENT_DOC = REPO_ROOT / "docs" / "DEPLOYMENT.md"


# --- Dockerfile ------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case, e.g. "RUN"
    arguments: str  # everything after the keyword, continuations joined


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """The stage's ENV values (`KEY=value` form), later ones winning."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for token in shlex.split(instruction.arguments):
                key, _, value = token.partition("=")
                values[key] = value
        return values


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions in order; comments dropped, `\\` continuations joined."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, "Dockerfile ends inside a continued instruction"
    return instructions


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    stages: list[Stage] = []
    for instruction in dockerfile_instructions(path.read_text()):
        if instruction.keyword == "FROM":
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name))
        else:
            assert stages, f"{instruction.keyword} before the first FROM"
            stages[-1].instructions.append(instruction)
    return stages


def dockerfile_healthcheck(path: Path = DOCKERFILE) -> list[str]:
    """The runtime stage's HEALTHCHECK command (exec form)."""
    (healthcheck,) = dockerfile_stages(path)[-1].all("HEALTHCHECK")
    _, _, exec_form = healthcheck.arguments.partition(" CMD ")
    command = json.loads(exec_form)
    assert isinstance(command, list), "HEALTHCHECK should use the exec form"
    return [str(part) for part in command]


def run_command(instruction: Instruction) -> str:
    """The shell command of a RUN, without its `--mount=...` style flags."""
    words = instruction.arguments.split(" ")
    while words and words[0].startswith("--"):
        words.pop(0)
    return " ".join(words).strip()


# --- .dockerignore ---------------------------------------------------------------------


def dockerignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _pattern_matches(pattern: str, relative: str) -> bool:
    # A pattern matches a path or any of its parent directories (Docker's semantics).
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    pattern = pattern.strip("/")
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return any(
            fnmatch.fnmatchcase(part, tail) or fnmatch.fnmatchcase(c, pattern)
            for part, c in zip(parts, candidates, strict=True)
        )
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)


def in_build_context(relative: str, patterns: list[str] | None = None) -> bool:
    """Whether `relative` (posix path from the repo root) is sent to `docker build`."""
    included = True
    for pattern in dockerignore_patterns() if patterns is None else patterns:
        negated = pattern.startswith("!")
        if _pattern_matches(pattern.lstrip("!"), relative):
            included = negated
    return included


# --- compose ---------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(path.read_text()))


def load_compose(path: Path) -> dict[str, Any]:
    document = load_yaml(path)
    assert "services" in document, f"{path.name} is not a compose file"
    return document


def service_networks(service: dict[str, Any]) -> list[str]:
    networks = service.get("networks", ["default"])
    return list(networks)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(str(item).partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def command_text(value: object) -> str:
    """A compose `command`/`test`/`entrypoint` (string or list) as one string."""
    if isinstance(value, list):
        return " ".join(str(part) for part in value)
    return str(value)


# --- systemd ---------------------------------------------------------------------------


def unit_entries(path: Path = SYSTEMD_UNIT) -> dict[str, list[tuple[str, str]]]:
    """Section -> (key, value) pairs in order; keys may repeat, as systemd allows."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[(.+)\]", line)
        if header:
            current = sections.setdefault(header.group(1), [])
            continue
        assert current is not None, f"entry outside a section: {line}"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [value for k, value in section if k == key]


def systemd_seconds(value: str) -> float:
    """`120s`, `2min`, `1min 30s`, `90` as seconds (the forms systemd accepts here)."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def compose_seconds(value: str) -> float:
    """A compose duration (`120s`, `2m`, `1m30s`) as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value))
