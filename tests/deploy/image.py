"""The image's Python environment, built without Docker by the Dockerfile's own steps.

No Docker engine runs here, so the builder stage is replayed on the host: the files its
COPY instructions take from the build context (as `.dockerignore` admits them), its ENV,
and its `uv ...` RUN commands, in order. The result is the virtual environment that the
runtime stage copies, so the tests run the gateway exactly as the image installs it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.markers import Marker

from tests.deploy.files import REPO_ROOT, Stage, dockerfile_stages, in_build_context, run_command

VENV_IN_IMAGE = "/opt/neuronetz-gateway/.venv"


def builder_stage() -> Stage:
    """The stage the runtime stage copies the virtual environment from."""
    stages = dockerfile_stages()
    runtime = stages[-1]
    sources = [
        word.removeprefix("--from=")
        for copy in runtime.all("COPY")
        for word in copy.arguments.split()
        if word.startswith("--from=")
    ]
    named = {stage.name: stage for stage in stages if stage.name}
    venv_sources = [named[s] for s in sources if s in named and named[s].all("RUN")]
    assert len(venv_sources) == 1, "the runtime stage should copy from one builder stage"
    return venv_sources[0]


def context_sources(stage: Stage) -> list[str]:
    """Paths the stage COPYs from the build context (not from other stages or images)."""
    paths: list[str] = []
    for copy in stage.all("COPY"):
        words = [w for w in copy.arguments.split() if not w.startswith("--")]
        if any(w.startswith("--from=") for w in copy.arguments.split()):
            continue
        paths.extend(words[:-1])  # the last word is the destination
    return paths


def _copy_admitted(source: Path, destination: Path) -> None:
    relative = source.relative_to(REPO_ROOT).as_posix()
    if source.is_dir():
        for child in sorted(source.iterdir()):
            _copy_admitted(child, destination / child.name)
    elif in_build_context(relative):
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def build_image_environment(workdir: Path) -> Path:
    """Replay the builder stage in `workdir`; return the virtual environment it made."""
    stage = builder_stage()
    context = workdir / "src-context"
    venv = workdir / "venv"
    for relative in context_sources(stage):
        source = REPO_ROOT / relative
        assert source.exists(), f"COPY {relative}: no such file in the repository"
        assert in_build_context(relative), f"COPY {relative}: excluded by .dockerignore"
        _copy_admitted(source, context / relative)

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(workdir)),
        **stage.env(),
        # Host stand-ins for the image's paths. Offline: everything must come from the
        # lock file via uv's cache, which `uv sync` of the checkout has filled. Hard links
        # instead of copies, and bytecode compiled on first import rather than ahead of
        # time, for speed; neither changes which files are installed.
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON": sys.executable,
        "UV_OFFLINE": "1",
        "UV_COMPILE_BYTECODE": "0",
        "UV_LINK_MODE": "hardlink",
        "UV_NO_PROGRESS": "1",
    }
    if "UV_CACHE_DIR" in os.environ:
        env["UV_CACHE_DIR"] = os.environ["UV_CACHE_DIR"]

    for run in stage.all("RUN"):
        command = shlex.split(run_command(run))
        assert command[0] == "uv", f"unexpected builder step: {run.arguments}"
        result = subprocess.run(
            command, cwd=context, env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr}"
    return venv


def installed_distributions(venv: Path) -> set[str]:
    """Normalised names of every distribution installed in `venv`."""
    script = (
        "import importlib.metadata as m, re\n"
        "for d in m.distributions():\n"
        "    print(re.sub(r'[-_.]+', '-', d.metadata['Name']).lower())\n"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stdout.split())


def locked_runtime_packages() -> set[str]:
    """Names `uv export --no-dev` lists from the lock file: the runtime dependencies."""
    result = subprocess.run(
        ["uv", "export", "--frozen", "--no-dev", "--no-hashes", "--format", "requirements-txt"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    names: set[str] = set()
    for line in result.stdout.splitlines():
        requirement, _, marker = line.strip().partition(";")
        if not requirement or requirement.startswith(("#", "-", ".")):
            continue
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue  # e.g. colorama, only on Windows
        name = requirement.split("==")[0].split("[")[0].strip()
        names.add(re.sub(r"[-_.]+", "-", name).lower())
    return names
