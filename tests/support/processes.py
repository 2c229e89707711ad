"""Real gateway processes for end-to-end tests.

A `GatewayProcess` runs `python -m neuronetz_gateway serve` with an environment built
from scratch (never the developer's), in a scratch directory (so no `.env` is read),
on a free loopback port. A reader thread copies its output to a log file and lets tests
wait for a log line (an event) instead of sleeping: `start()` waits for uvicorn's
"Application startup complete".
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

STARTUP_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_environment() -> dict[str, str]:
    """The minimum a child process needs, without any NZ/gateway variables of ours."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
    return {name: os.environ[name] for name in keep if name in os.environ}


class LogTail:
    """Lines a child process printed, with a wait for the first line matching a test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self.closed = False
        self._changed = threading.Condition()

    def follow(self, stream: IO[bytes]) -> None:
        with self.path.open("ab") as log:
            for raw in iter(stream.readline, b""):
                log.write(raw)
                log.flush()
                with self._changed:
                    self.lines.append(raw.decode(errors="replace"))
                    self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str | None:
        """The first line (from the start) satisfying `predicate`; None on timeout or EOF."""
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                if self.closed or not self._changed.wait(timeout):
                    return None

    def wait_for_count(self, needle: str, count: int, timeout: float) -> bool:
        """True once `count` lines containing `needle` were printed (False on timeout)."""
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            with self._changed:
                while sum(needle in line for line in self.lines) < count:
                    if self.closed or deadline.is_set():
                        return False
                    self._changed.wait(0.5)
                return True
        finally:
            timer.cancel()

    def text(self) -> str:
        with self._changed:
            return "".join(self.lines)


class GatewayProcess:
    """One gateway server process; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        port: int | None = None,
        args: tuple[str, ...] = (),
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.args = args
        self.preexec = preexec  # runs in the child before it executes the gateway
        self.env = {
            **base_environment(),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.port),
            "LOG_FORMAT": "json",
            # One process unless a test asks for more (`auto` is the production default).
            "GATEWAY_WORKERS": "1",
            **env,
        }
        self.workdir = Path(tempfile.mkdtemp(prefix="nzgw-proc-"))
        self.log = LogTail(self.workdir / "gateway.log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> str:
        """Start the server and wait until it has started up; return the base URL."""
        self.launch()
        return self.wait_until_started(timeout)

    def launch(self) -> None:
        """Start the process without waiting for it."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "neuronetz_gateway", "serve", *self.args],
            env=self.env,
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec,
        )
        assert self.process.stdout is not None
        threading.Thread(target=self.log.follow, args=(self.process.stdout,), daemon=True).start()

    def wait_until_started(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> str:
        """Wait for uvicorn's "Application startup complete"; return the base URL."""
        if self.log.wait_for(lambda line: "Application startup complete" in line, timeout) is None:
            self.stop()
            raise RuntimeError(f"gateway did not start:\n{self.logs()}")
        return self.base_url

    def logs(self) -> str:
        return self.log.text()

    def wait_for_log(self, needle: str, timeout: float = 10.0) -> str | None:
        """The first log line containing `needle`, waiting up to `timeout` for it."""
        return self.log.wait_for(lambda line: needle in line, timeout)

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit within `timeout`."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
