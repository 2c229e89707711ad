"""The knobs that shape how the double answers model requests."""

from __future__ import annotations

from dataclasses import dataclass, fields

# Messages real Ollama uses for the failures tests most often script.
QUEUE_FULL = (503, "server busy, please try again.  maximum pending requests exceeded")
RUNNER_CRASHED = (500, "llama runner process has terminated: exit status 2")


@dataclass(eq=False)
class Behaviour:
    """How model requests are answered; every field may be changed at any time.

    Fields are read while a request is being answered, so a change from the test
    thread takes effect at the next decision point (e.g. the next chunk).
    """

    completion_tokens: int = 5
    """Tokens generated before the model stops by itself (before any cap)."""

    chunk_delay: float = 0.0
    """Seconds between two frames of a stream."""

    first_byte_delay: float = 0.0
    """Seconds before the status line is sent (a slow model load)."""

    fail_with: tuple[int, str] | None = None
    """Answer with this status and message, in the surface's error shape."""

    mid_stream_error_after: int | None = None
    """After N token chunks (or the last token, if fewer) end the stream with the
    in-band error: a native `{"error": ...}` line, or an OpenAI `data: {"error": {...}}`
    frame and no `[DONE]`; on `/v1/messages` and `/v1/responses` the stream just ends
    (Ollama's translating writers drop the error line). Before any chunk (N=0), and for
    non-streamed requests, the answer is a 500 with the error body instead, as Ollama
    does."""

    error_message: str = RUNNER_CRASHED[1]
    """The text of mid-stream errors (put fake paths or IPs here to test sanitising)."""

    disconnect_after: int | None = None
    """After N token chunks (or the last token, if fewer) close the connection with
    the response unfinished; non-streamed requests get no response at all."""

    hang: bool = False
    """Hold the request without answering; setting it back to False releases it."""

    def copy(self) -> Behaviour:
        """An independent Behaviour with the same knob values."""
        return Behaviour(**{f.name: getattr(self, f.name) for f in fields(Behaviour)})
