"""Go's own `encoding/json`, as a subprocess: `decide.go` built once, then asked line by
line what Ollama would decide from a body (see decide.go)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

SOURCE = Path(__file__).with_name("decide.go")


def go_available() -> bool:
    return shutil.which("go") is not None


def build(directory: Path) -> Path:
    """Compile decide.go into `directory`; the path of the binary."""
    binary = directory / "decide"
    subprocess.run(
        ["go", "build", "-o", str(binary), str(SOURCE)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return binary


def fold_table(binary: Path) -> dict[int, str]:
    """Every non-ASCII rune Go's key matching equates with an ASCII letter."""
    out = subprocess.run([str(binary), "fold-table"], check=True, capture_output=True, timeout=60)
    return {
        int(code): letter
        for code, letter in (line.split() for line in out.stdout.decode().splitlines())
    }


class GoDecider:
    """A running decide.go: `decide(path, raw)` is Go's decision, or {"error": ...}."""

    def __init__(self, binary: Path) -> None:
        self._process = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def decide(self, path: str, raw: bytes) -> dict[str, Any]:
        stdin, stdout = self._pipes()
        line = {"path": path, "body": base64.b64encode(raw).decode()}
        stdin.write(orjson.dumps(line) + b"\n")
        stdin.flush()
        answer: dict[str, Any] = orjson.loads(stdout.readline())
        return answer

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        return self._process.stdin, self._process.stdout

    def close(self) -> None:
        stdin, _ = self._pipes()
        stdin.close()
        self._process.wait(timeout=10)

    def __enter__(self) -> GoDecider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
