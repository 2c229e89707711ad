"""A real Prometheus server (Debian's `prometheus` package) for end-to-end tests.

Started on a free loopback port with a scratch data directory and the given
configuration; `query` runs an instant query through its HTTP API the way Grafana does.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.processes import free_port

START_TIMEOUT_SECONDS = 30.0


def available() -> bool:
    return shutil.which("prometheus") is not None


class PrometheusProcess:
    """One Prometheus server; `start()` returns once it answers `/-/ready`."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="nzgw-prometheus-"))
        self.config_file = self.workdir / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.log_file = self.workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={self.config_file}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not start:\n{self.logs()}")
            time.sleep(0.1)  # polling a server that offers nothing to wait on

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def logs(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    async def api(self, client: httpx.AsyncClient, path: str, **params: str) -> Any:
        """The `data` of a successful answer of the HTTP API at `/api/v1/<path>`."""
        response = await client.get(f"{self.base_url}/api/v1/{path}", params=params)
        body = response.json()
        assert response.status_code == 200, body
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
        """The samples of an instant query (a vector, or a scalar as one sample)."""
        data = await self.api(client, "query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])


def finite(samples: list[dict[str, Any]]) -> list[float]:
    """The sample values that are numbers (not NaN or infinite)."""
    values = (float(sample["value"][1]) for sample in samples)
    return [value for value in values if math.isfinite(value)]
