"""A fast upstream stub speaking Ollama's wire format, for the benchmark.

Raw `asyncio.Protocol` on uvloop with httptools parsing: no framework, answers
pre-rendered where possible, so it costs a few microseconds per request and is never
what the benchmark measures (`python -m bench` checks it direct first).

Routes: `GET /api/version`, `GET /api/tags`, `POST /api/chat` (JSON, or NDJSON when
`stream` is true or absent), `POST /v1/chat/completions` (JSON, or SSE when
`stream` is true, with a usage chunk when `stream_options.include_usage`) and
`POST /v1/messages` (JSON, or Anthropic's SSE events when `stream` is true, in the order
Ollama writes them).

A stream has `chunks` content chunks and a final chunk, one every `interval_ms`; each
content or final chunk carries `"bench_ts"`: `time.monotonic_ns()` when it was written
(CLOCK_MONOTONIC is one clock for every process of the machine), so a client can tell
how long the chunk spent between the stub and itself.

Run: `python -m bench.stub --port 11434 --chunks 100 --interval-ms 20`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any, cast

import httptools
import orjson
import uvloop

MODELS = ("llama3.1:8b", "qwen2.5:0.5b")
MODIFIED_AT = "2024-07-23T10:15:30.123456789Z"
CREATED_AT = "2024-07-23T10:15:30.123456Z"
ANSWER_TOKENS = 5
VERSION = {"version": "0.6.0"}

_JSON = b"application/json; charset=utf-8"
_NDJSON = b"application/x-ndjson"
_SSE = b"text/event-stream"


@dataclass(frozen=True, slots=True)
class StubConfig:
    """How streams are paced: `chunks` content chunks, one every `interval_ms`."""

    chunks: int = 100
    interval_ms: float = 20.0


def _tags_entry(name: str) -> dict[str, Any]:
    family = name.split(":", 1)[0].rstrip("0123456789.") or "llama"
    return {
        "name": name,
        "model": name,
        "modified_at": MODIFIED_AT,
        "size": 4_920_753_328,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "8.0B",
            "quantization_level": "Q4_K_M",
        },
    }


def _whole(status: bytes, content_type: bytes, body: bytes, keep_alive: bool) -> bytes:
    connection = b"" if keep_alive else b"Connection: close\r\n"
    return b"".join(
        (
            b"HTTP/1.1 ",
            status,
            b"\r\nContent-Type: ",
            content_type,
            b"\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\n",
            connection,
            b"\r\n",
            body,
        )
    )


def _stream_head(content_type: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: "
        + content_type
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    )


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _native_answer(model: str, prompt_tokens: int) -> bytes:
    text = "".join(f"tok{i} " for i in range(ANSWER_TOKENS))
    return orjson.dumps(
        {
            "model": model,
            "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": text},
            "done_reason": "stop",
            "done": True,
            "total_duration": 6_500_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 100_000,
            "eval_count": ANSWER_TOKENS,
            "eval_duration": 5_000_000,
        }
    )


def _openai_answer(model: str, prompt_tokens: int) -> bytes:
    text = "".join(f"tok{i} " for i in range(ANSWER_TOKENS))
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1721729730,
            "model": model,
            "system_fingerprint": "fp_ollama",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": ANSWER_TOKENS,
                "total_tokens": prompt_tokens + ANSWER_TOKENS,
            },
        }
    )


def _prompt_tokens(body: dict[str, Any]) -> int:
    words = 0
    for message in body.get("messages") or ():
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            words += len(message["content"].split())
    return max(1, words)


class _Stream:
    """One paced response: writes a chunk per tick until the last one."""

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        config: StubConfig,
        model: str,
        kind: str,
        include_usage: bool,
    ) -> None:
        self.transport = transport
        self.loop = loop
        self.config = config
        self.model = model.encode()
        self.kind = kind  # "native", "openai" or "messages"
        self.include_usage = include_usage
        self.sent = 0
        self.start = loop.time()
        self.on_done: list[Any] = []

    def begin(self) -> None:
        self.transport.write(_stream_head(_NDJSON if self.kind == "native" else _SSE))
        self._tick()

    def _tick(self) -> None:
        if self.transport.is_closing():
            return
        index = self.sent
        self.sent += 1
        if index < self.config.chunks:
            self.transport.write(_chunk(self._content(index)))
            when = self.start + self.sent * self.config.interval_ms / 1000.0
            self.loop.call_at(when, self._tick)
            return
        self.transport.write(_chunk(self._final()) + b"0\r\n\r\n")
        for callback in self.on_done:
            callback()

    def _content(self, index: int) -> bytes:
        stamp = time.monotonic_ns()
        if self.kind == "messages":
            delta = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                b'"delta":{"type":"text_delta","text":"tok%d "},"bench_ts":%d}\n\n' % (index, stamp)
            )
            return _messages_start(self.model) + delta if index == 0 else delta
        if self.kind == "openai":
            return (
                b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1721729730,'
                b'"model":"%s","system_fingerprint":"fp_ollama","choices":[{"index":0,'
                b'"delta":{"role":"assistant","content":"tok%d "},"finish_reason":null}],'
                b'"bench_ts":%d}\n\n' % (self.model, index, stamp)
            )
        return (
            b'{"model":"%s","created_at":"%s","message":{"role":"assistant","content":"tok%d "},'
            b'"done":false,"bench_ts":%d}\n' % (self.model, CREATED_AT.encode(), index, stamp)
        )

    def _final(self) -> bytes:
        stamp = time.monotonic_ns()
        chunks = self.config.chunks
        if self.kind == "messages":
            return (
                b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
                b'event: message_delta\ndata: {"type":"message_delta","delta":'
                b'{"stop_reason":"end_turn"},"usage":{"input_tokens":1,"output_tokens":%d},'
                b'"bench_ts":%d}\n\n'
                b'event: message_stop\ndata: {"type":"message_stop"}\n\n' % (chunks, stamp)
            )
        if self.kind == "openai":
            frames = [
                b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1721729730,'
                b'"model":"%s","system_fingerprint":"fp_ollama","choices":[{"index":0,'
                b'"delta":{"role":"assistant","content":""},"finish_reason":"stop"}],'
                b'"bench_ts":%d}\n\n' % (self.model, stamp)
            ]
            if self.include_usage:
                frames.append(
                    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk",'
                    b'"created":1721729730,"model":"%s","system_fingerprint":"fp_ollama",'
                    b'"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":%d,'
                    b'"total_tokens":%d}}\n\n' % (self.model, chunks, chunks + 1)
                )
            frames.append(b"data: [DONE]\n\n")
            return b"".join(frames)
        return (
            b'{"model":"%s","created_at":"%s","message":{"role":"assistant","content":""},'
            b'"done_reason":"stop","done":true,"total_duration":1,"load_duration":1,'
            b'"prompt_eval_count":1,"prompt_eval_duration":1,"eval_count":%d,'
            b'"eval_duration":1,"bench_ts":%d}\n' % (self.model, CREATED_AT.encode(), chunks, stamp)
        )


def _messages_start(model: bytes) -> bytes:
    """`message_start` (its input_tokens an estimate) and the text block's start."""
    return (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1",'
        b'"type":"message","role":"assistant","model":"%s","content":[],'
        b'"usage":{"input_tokens":3,"output_tokens":0}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n' % model
    )


def _messages_answer(model: str, prompt_tokens: int) -> bytes:
    text = "".join(f"tok{i} " for i in range(ANSWER_TOKENS))
    return orjson.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": prompt_tokens, "output_tokens": ANSWER_TOKENS},
        }
    )


class StubProtocol(asyncio.Protocol):
    """One client connection: parse requests with httptools, answer from `Answers`."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(_whole(b"400 Bad Request", _JSON, b"{}", False))
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        keep_alive = self.parser.should_keep_alive()
        method = self.parser.get_method()
        stream = self.answers.answer(transport, method, self.url, b"".join(self.body), keep_alive)
        if not keep_alive:
            if stream is None:
                transport.close()
            else:
                stream.on_done.append(transport.close)


class Answers:
    """The stub's routes; pre-renders what does not depend on the request."""

    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self.tags = orjson.dumps({"models": [_tags_entry(name) for name in MODELS]})
        self.version = orjson.dumps(VERSION)
        self._answers: dict[tuple[str, str, int], bytes] = {}

    def answer(
        self, transport: asyncio.Transport, method: bytes, url: bytes, body: bytes, keep: bool
    ) -> _Stream | None:
        """Write the answer (or start a stream, returned) for one request."""
        path = url.split(b"?", 1)[0]
        if method == b"GET" and path == b"/api/tags":
            transport.write(_whole(b"200 OK", _JSON, self.tags, keep))
        elif method == b"GET" and path == b"/api/version":
            transport.write(_whole(b"200 OK", _JSON, self.version, keep))
        elif method == b"POST" and path in _CHAT_KINDS:
            return self._chat(transport, body, keep, _CHAT_KINDS[path])
        else:
            transport.write(_whole(b"404 Not Found", _JSON, b'{"error":"not found"}', keep))
        return None

    def _chat(
        self, transport: asyncio.Transport, raw: bytes, keep: bool, kind: str
    ) -> _Stream | None:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            transport.write(_whole(b"400 Bad Request", _JSON, b'{"error":"bad request"}', keep))
            return None
        model = body["model"]
        if model not in MODELS:
            error = b'{"error":"model \\"%s\\" not found"}' % model.encode()
            transport.write(_whole(b"404 Not Found", _JSON, error, keep))
            return None
        if body.get("stream", kind == "native") is True:
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            loop = asyncio.get_running_loop()
            stream = _Stream(transport, loop, self.config, model, kind, usage)
            stream.begin()
            return stream
        tokens = _prompt_tokens(body)
        answer = self._answers.get((kind, model, tokens))
        if answer is None:
            rendered = _RENDER[kind](model, tokens)
            answer = self._answers.setdefault((kind, model, tokens), rendered)
        content_type = _JSON if kind == "native" else b"application/json"
        transport.write(_whole(b"200 OK", content_type, answer, keep))
        return None


_CHAT_KINDS = {
    b"/api/chat": "native",
    b"/v1/chat/completions": "openai",
    b"/v1/messages": "messages",
}
_RENDER = {"native": _native_answer, "openai": _openai_answer, "messages": _messages_answer}


async def serve(host: str, port: int, config: StubConfig) -> None:
    """Serve until cancelled."""
    answers = Answers(config)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: StubProtocol(answers), host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stub", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--chunks", type=int, default=100, help="content chunks per stream")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="pacing of a stream")
    args = parser.parse_args(argv)
    config = StubConfig(chunks=args.chunks, interval_ms=args.interval_ms)
    uvloop.run(serve(args.host, args.port, config))


if __name__ == "__main__":
    main()
