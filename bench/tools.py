"""External tools the benchmark needs, installed when missing (idempotent, quiet).

wrk comes from Debian's packages; py-spy and granian are dev dependencies of the
project (`uv sync` installs them).
"""

from __future__ import annotations

import os
import shutil
import subprocess

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "-qq", *args],
        env=os.environ | APT_ENV,
        capture_output=True,
        text=True,
        check=False,
    )


def ensure_wrk() -> str:
    """The path of wrk, installing the Debian package first if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise RuntimeError("wrk is missing and apt-get is not available: install wrk")
    installed = _apt("install", "-y", "--no-install-recommends", "wrk")
    if installed.returncode != 0:
        # A fresh machine has no package lists yet.
        _apt("update")
        installed = _apt("install", "-y", "--no-install-recommends", "wrk")
    found = shutil.which("wrk")
    if installed.returncode != 0 or found is None:
        raise RuntimeError(f"could not install wrk with apt-get:\n{installed.stderr[-2000:]}")
    return found
