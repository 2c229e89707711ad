"""The request bodies every scenario sends, and the rendered requests per target."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from bench.rawhttp import render_request

MODEL = "llama3.1:8b"
PROMPT = "Why is the sky blue? Answer in one short paragraph."


# The output cap of Messages requests (required there); no answer of the stub reaches it.
MESSAGES_MAX_TOKENS = 4096


def chat_body(*, openai: bool, stream: bool, messages_api: bool = False) -> bytes:
    body: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": stream,
    }
    if openai and stream:
        body["stream_options"] = {"include_usage": True}
    if messages_api:
        body["max_tokens"] = MESSAGES_MAX_TOKENS
    return orjson.dumps(body)


@dataclass(frozen=True)
class Endpoint:
    """One model endpoint: native, OpenAI chat, or Anthropic Messages."""

    name: str
    path: str
    openai: bool
    messages_api: bool = False

    def body(self, *, stream: bool) -> bytes:
        return chat_body(openai=self.openai, stream=stream, messages_api=self.messages_api)


NATIVE_CHAT = Endpoint("/api/chat", "/api/chat", openai=False)
OPENAI_CHAT = Endpoint("/v1/chat/completions", "/v1/chat/completions", openai=True)
MESSAGES = Endpoint("/v1/messages", "/v1/messages", openai=False, messages_api=True)
ENDPOINTS = (NATIVE_CHAT, OPENAI_CHAT)
# The SSE surfaces compared in the stream scenario (cost per relayed chunk).
STREAMED_SURFACES = (OPENAI_CHAT, MESSAGES)


@dataclass(frozen=True)
class Target:
    """Something requests can be sent to: the gateway (with a key), the bare proxy or
    the stub itself."""

    name: str
    port: int
    authorization: str | None = None
    pid: int | None = None  # the serving process, for CPU accounting

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.authorization} if self.authorization else {}

    def request(self, endpoint: Endpoint, *, stream: bool = False) -> bytes:
        return render_request(
            "POST",
            endpoint.path,
            self.port,
            body=endpoint.body(stream=stream),
            headers=self.headers,
        )
