"""Claude Code and Codex, the agentic CLIs, installed from npm and run offline.

Each CLI is installed once per machine into a cache outside the repository
(`$NZ_AGENT_CLI_CACHE`, default `~/.cache/neuronetz-gateway/agent-clis/<package>@<version>`):
installed into a scratch directory and renamed into place, under a file lock, so test
runs that start together install it once. `run_claude_code` and `run_codex` point a CLI
at a base URL with a key, in a scratch home, with everything that would reach the
internet (telemetry, update checks, retries) turned off.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_TIMEOUT_SECONDS = 600
RUN_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class NpmCli:
    package: str
    version: str
    command: str

    @property
    def directory(self) -> Path:
        default = Path.home() / ".cache" / "neuronetz-gateway" / "agent-clis"
        root = Path(os.environ.get("NZ_AGENT_CLI_CACHE", default))
        return root / f"{self.package.replace('/', '+')}@{self.version}"

    @property
    def binary(self) -> Path:
        return self.directory / "node_modules" / ".bin" / self.command

    def installed(self) -> Path:
        """The CLI's executable, installed first if this machine has none yet."""
        if self.binary.exists():
            return self.binary
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        with (self.directory.parent / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.binary.exists():
                self._install()
        return self.binary

    def _install(self) -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(f"npm is needed to install {self.package} (node >= 18)")
        scratch = Path(tempfile.mkdtemp(prefix=".install-", dir=self.directory.parent))
        try:
            subprocess.run(
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                    str(scratch),
                    f"{self.package}@{self.version}",
                ],
                check=True,
                capture_output=True,
                timeout=INSTALL_TIMEOUT_SECONDS,
            )
            scratch.rename(self.directory)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


CLAUDE_CODE = NpmCli("@anthropic-ai/claude-code", "2.1.197", "claude")
CODEX = NpmCli("@openai/codex", "0.171.0", "codex")


def _base_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


def run_claude_code(
    home: Path, base_url: str, key: str, model: str, prompt: str
) -> subprocess.CompletedProcess[str]:
    """`claude -p PROMPT --model MODEL` against `base_url` with `key` (`ANTHROPIC_API_KEY`)."""
    env = {
        **_base_env(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": key,
        # No telemetry, error reports, update checks or other calls beyond the one asked.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    return subprocess.run(
        [str(CLAUDE_CODE.installed()), "-p", prompt, "--model", model],
        env=env,
        cwd=home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


CODEX_CONFIG = """\
model = "{model}"
model_provider = "neuronetz"
check_for_update_on_startup = false

[analytics]
enabled = false

[model_providers.neuronetz]
name = "neuronetz gateway"
base_url = "{base_url}/v1"
env_key = "NEURONETZ_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""


def run_codex(
    home: Path, base_url: str, key: str, model: str, prompt: str
) -> subprocess.CompletedProcess[str]:
    """`codex exec PROMPT` with a provider block for `base_url` (Responses wire API)."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(model=model, base_url=base_url))
    env = {**_base_env(home), "CODEX_HOME": str(codex_home), "NEURONETZ_API_KEY": key}
    return subprocess.run(
        [str(CODEX.installed()), "exec", "--skip-git-repo-check", prompt],
        env=env,
        cwd=home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
