"""Thread-safe log of the requests the double received, with blocking waits."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the double received it, and how answering it ended.

    The request fields are set on arrival. `status`, `chunks_sent`, `completed`
    and `cancelled` describe the answer as of when this snapshot was taken:
    `completed` means the double wrote its whole response (scripted errors
    included); `cancelled` means the client went away before that;
    `chunks_sent` counts the token chunks written (0 for non-streamed answers).
    `arrived_at`, `started_at` (a GPU runner began generating; None if it never did)
    and `finished_at` (the outcome was recorded) are `time.monotonic()` values.
    """

    method: str
    path: str
    raw_path: str
    headers: list[tuple[str, str]]
    body: bytes
    json: Any | None
    # How Ollama reads the body (gojson.GoReading, or the gojson.GoRefusal it answers
    # with); None on routes without a request body.
    reading: Any = None
    status: int | None = None
    chunks_sent: int = 0
    completed: bool = False
    cancelled: bool = False
    arrived_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @property
    def decision(self) -> Any:
        """What Ollama decides from the body (gojson.Decision), None if it refuses it."""
        return getattr(self.reading, "decision", None)

    @property
    def model(self) -> str | None:
        """The `model` named in the JSON body, if any."""
        model = self.json.get("model") if isinstance(self.json, dict) else None
        return model if isinstance(model, str) else None


@dataclass(eq=False)
class Entry:
    """The live, mutable record of one request; only the server thread writes it."""

    snapshot: RecordedRequest
    done: bool = field(default=False)


class Recorder:
    """Requests in arrival order, in-flight count and cancellations, behind one lock."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._entries: list[Entry] = []
        self._cancelled: list[Entry] = []
        self._cancel_cursor = 0
        self._in_flight = 0

    def arrived(self, request: RecordedRequest) -> Entry:
        """Log a new request as in flight."""
        entry = Entry(replace(request, arrived_at=time.monotonic()))
        with self._cond:
            self._entries.append(entry)
            self._in_flight += 1
            self._cond.notify_all()
        return entry

    def update(self, entry: Entry, **changes: Any) -> None:
        """Change answer fields of a request (status, chunks_sent, started_at)."""
        with self._cond:
            entry.snapshot = replace(entry.snapshot, **changes)
            self._cond.notify_all()

    def finished(self, entry: Entry, *, completed: bool, cancelled: bool = False) -> None:
        """Record how answering ended and take the request out of flight.

        The server calls this just before its last write, so a client that saw
        the end of a response also sees the outcome. A later call corrects the
        outcome (that last write failed) without counting the request twice.
        """
        with self._cond:
            finished_at = entry.snapshot.finished_at
            if not entry.done:
                entry.done = True
                self._in_flight -= 1
                finished_at = time.monotonic()
            entry.snapshot = replace(
                entry.snapshot, completed=completed, cancelled=cancelled, finished_at=finished_at
            )
            if cancelled and entry not in self._cancelled:
                self._cancelled.append(entry)
            self._cond.notify_all()

    def requests(self) -> list[RecordedRequest]:
        """Snapshots of every request since the last clear, in arrival order."""
        with self._cond:
            return [e.snapshot for e in self._entries]

    def in_flight(self) -> int:
        """Requests currently being answered."""
        with self._cond:
            return self._in_flight

    def clear(self) -> None:
        """Forget logged requests and cancellations; in-flight ones still count."""
        with self._cond:
            self._entries.clear()
            self._cancelled.clear()
            self._cancel_cursor = 0

    def wait_for_requests(self, n: int, timeout: float) -> list[RecordedRequest]:
        """Block until at least `n` requests were logged; TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._entries) >= n, timeout):
                got = len(self._entries)
                raise TimeoutError(f"expected {n} requests within {timeout}s, got {got}")
            return [e.snapshot for e in self._entries]

    def wait_for_cancellation(self, timeout: float) -> RecordedRequest:
        """Block until a request not yet returned here was cancelled by its client."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._cancel_cursor < len(self._cancelled), timeout):
                raise TimeoutError(f"no request was cancelled by its client within {timeout}s")
            entry = self._cancelled[self._cancel_cursor]
            self._cancel_cursor += 1
            return entry.snapshot

    def wait_until_idle(self, timeout: float) -> None:
        """Block until no request is in flight; TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._in_flight == 0, timeout):
                raise TimeoutError(f"{self._in_flight} requests still in flight after {timeout}s")
