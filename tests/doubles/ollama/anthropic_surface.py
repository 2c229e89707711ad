"""`POST /v1/messages`: Ollama's Anthropic Messages layer (`anthropic/anthropic.go`,
`middleware/anthropic.go`).

The request is checked and converted as `AnthropicMessagesMiddleware` does, answered by
`chat_model`, and each chunk rendered as `StreamConverter.Process` renders it:
`message_start` (its `input_tokens` an estimate: the request's characters / 4), content
blocks (`thinking`, `text`, `tool_use`) with their deltas, then `message_delta` with the
real counts and `message_stop`. No `ping` events. Errors use Anthropic's shape with
Ollama's status-to-type mapping. A stream that breaks (`mid_stream_error_after`) just
ends, without `message_delta` or `message_stop`: Ollama's writer drops the in-band error
line of its chat handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from . import wire
from .chat_model import JSON, Answer, Tool, Turn, answer, required_parameters
from .routes import Call, Dialect, Generation, Reply, Static, body_error, checked_model, error

EFFORTS = ("high", "medium", "low", "max")


class TruncatingGeneration(Generation):
    """A stream whose in-band error Ollama's translating writers drop: it just ends."""

    def error_frame(self, message: str) -> bytes:
        return b""


def event(name: str, data: JSON) -> bytes:
    """One server-sent event as Ollama's `writeSSE` writes it."""
    return b"event: " + name.encode() + b"\ndata: " + wire.dumps(data) + b"\n\n"


def _go_type_error(field: str, value: Any, go_type: str, struct: str) -> Static:
    kind = {str: "string", bool: "bool", int: "number", float: "number", list: "array"}.get(
        type(value), "object"
    )
    message = (
        f"json: cannot unmarshal {kind} into Go struct field {struct}.{field} of type {go_type}"
    )
    return error(Dialect.ANTHROPIC, 400, message)


def _bind_error(body: Mapping[str, Any]) -> Static | None:
    """The 400 `ShouldBindJSON` gives for fields of the wrong JSON type."""
    checks = (("model", str, "string"), ("max_tokens", int, "int"), ("stream", bool, "bool"))
    for name, expected, go_type in checks:
        value = body.get(name)
        if value is None:
            continue
        wrong = not isinstance(value, expected) or (expected is int and isinstance(value, bool))
        if wrong:
            return _go_type_error(name, value, go_type, "MessagesRequest")
    if body.get("messages") is not None and not isinstance(body.get("messages"), list):
        return _go_type_error(
            "messages", body["messages"], "[]anthropic.MessageParam", "MessagesRequest"
        )
    return None


# -- request conversion (FromMessagesRequest) ---------------------------------------


def _blocks(content: Any) -> list[JSON]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [dict(b) for b in content if isinstance(b, Mapping)]
    return []


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "".join(
        b["text"]
        for b in _blocks(value)
        if b.get("type") == "text" and isinstance(b.get("text"), str)
    )


def _convert_message(message: Mapping[str, Any]) -> list[JSON]:
    role = str(message.get("role", "")).lower()
    blocks = _blocks(message.get("content"))
    results = [
        {"role": "tool", "content": _text_of(b.get("content"))}
        for b in blocks
        if b.get("type") in ("tool_result", "web_search_tool_result")
    ]
    text = _text_of([b for b in blocks if b.get("type") == "text"])
    calls = [b for b in blocks if b.get("type") in ("tool_use", "server_tool_use")]
    thinking = next(
        (
            b["thinking"]
            for b in blocks
            if b.get("type") == "thinking" and isinstance(b.get("thinking"), str)
        ),
        "",
    )
    own = [{"role": role, "content": text}] if text or calls or thinking else []
    return results + own if role == "user" else own + results


def _tools(body: Mapping[str, Any]) -> list[Tool]:
    tools: list[Tool] = []
    for tool in body.get("tools") or ():
        if not isinstance(tool, Mapping):
            continue
        if str(tool.get("type", "")).startswith("web_search"):
            tools.append(Tool("web_search", ("query",)))
        elif isinstance(tool.get("name"), str):
            tools.append(Tool(tool["name"], required_parameters(tool.get("input_schema"))))
    return tools


def _forced_tool(body: Mapping[str, Any], tools: list[Tool]) -> str | None:
    choice = body.get("tool_choice")
    if not isinstance(choice, Mapping) or not tools:
        return None
    name = choice.get("name")
    if choice.get("type") == "tool" and isinstance(name, str):
        return name
    return tools[0].name if choice.get("type") == "any" else None


def _think(body: Mapping[str, Any]) -> bool | None:
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if kind in ("enabled", "disabled"):
        return bool(kind == "enabled")
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, Mapping) else None
    if isinstance(effort, str) and effort.strip().lower().replace("xhigh", "high") in EFFORTS:
        return True
    return None


def to_turn(body: Mapping[str, Any], model: str) -> Turn:
    """The chat request Ollama runs for a Messages request."""
    messages: list[JSON] = []
    system = _text_of(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in body.get("messages") or ():
        if isinstance(message, Mapping):
            messages += _convert_message(message)
    tools = _tools(body)
    return Turn(
        model=model,
        messages=messages,
        tools=tools,
        think=_think(body),
        forced_tool=_forced_tool(body, tools),
        cap=body.get("max_tokens"),
    )


def estimate_input_tokens(body: Mapping[str, Any]) -> int:
    """`EstimateCountTokens`: the request's characters / 4 (at least 1 with any content)."""
    total = len(_text_of(body.get("system")).encode())
    messages = [m for m in body.get("messages") or () if isinstance(m, Mapping)]
    for message in messages:
        total += len(str(message.get("role", "")))
        for block in _blocks(message.get("content")):
            for name in ("text", "thinking"):
                if isinstance(block.get(name), str):
                    total += len(block[name].encode())
            if block.get("type") in ("tool_use", "tool_result"):
                total += len(orjson.dumps(block))
    for tool in body.get("tools") or ():
        if isinstance(tool, Mapping):
            total += len(str(tool.get("name", ""))) + len(str(tool.get("description", "")))
            total += len(orjson.dumps(tool["input_schema"])) if "input_schema" in tool else 0
    tokens = total // 4
    return max(tokens, 1) if messages or body.get("system") is not None else tokens


# -- responses (ToMessagesResponse, StreamConverter) ----------------------------------


def stop_reason(done_reason: str, tool_calls: bool) -> str:
    if tool_calls:
        return "tool_use"
    return {"stop": "end_turn", "length": "max_tokens", "": ""}.get(done_reason, "stop_sequence")


def _tool_use(call: JSON) -> JSON:
    function = call["function"]
    return {
        "type": "tool_use",
        "id": call["id"],
        "name": function["name"],
        "input": function["arguments"],
    }


def messages_response(message_id: str, whole: JSON) -> JSON:
    """A non-streamed Messages response (`content` null when the model said nothing)."""
    message = whole["message"]
    content: list[JSON] = []
    if message.get("thinking"):
        content.append({"type": "thinking", "thinking": message["thinking"]})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    calls = message.get("tool_calls") or []
    content += [_tool_use(call) for call in calls]
    response: JSON = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": whole["model"],
        "content": content or None,
        "stop_reason": stop_reason(whole["done_reason"], bool(calls)),
        "usage": {"input_tokens": whole["prompt_eval_count"], "output_tokens": whole["eval_count"]},
    }
    if not response["stop_reason"]:
        del response["stop_reason"]
    return response


class StreamConverter:
    """Ollama's `anthropic.StreamConverter`: chat chunks in, Messages events out."""

    def __init__(self, message_id: str, model: str, estimated_input_tokens: int) -> None:
        self.message_id = message_id
        self.model = model
        self.estimate = estimated_input_tokens
        self.first = True
        self.index = 0
        self.thinking_started = False
        self.thinking_done = False
        self.text_started = False
        self.tools_sent = 0

    def _stop(self) -> tuple[str, JSON]:
        return "content_block_stop", {"type": "content_block_stop", "index": self.index}

    def _start(self, block: JSON) -> tuple[str, JSON]:
        start = {"type": "content_block_start", "index": self.index, "content_block": block}
        return "content_block_start", start

    def _delta(self, delta: JSON) -> tuple[str, JSON]:
        return "content_block_delta", {
            "type": "content_block_delta",
            "index": self.index,
            "delta": delta,
        }

    def process(self, chunk: JSON) -> list[tuple[str, JSON]]:
        events: list[tuple[str, JSON]] = []
        message = chunk["message"]
        if self.first:
            self.first = False
            input_tokens = chunk.get("prompt_eval_count") or self.estimate
            start = {
                "id": self.message_id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "usage": {"input_tokens": input_tokens, "output_tokens": 0},
            }
            events.append(("message_start", {"type": "message_start", "message": start}))
        if message.get("thinking") and not self.thinking_done:
            events += self._thinking(message["thinking"])
        if message.get("content"):
            events += self._text(message["content"])
        for call in message.get("tool_calls") or ():
            events += self._tool_call(call)
        if chunk["done"]:
            events += self._done(chunk)
        return events

    def _thinking(self, thinking: str) -> list[tuple[str, JSON]]:
        events = []
        if self.text_started:
            events.append(self._stop())
            self.index += 1
            self.text_started = False
        if not self.thinking_started:
            self.thinking_started = True
            events.append(self._start({"type": "thinking", "thinking": ""}))
        events.append(self._delta({"type": "thinking_delta", "thinking": thinking}))
        return events

    def _close_thinking(self) -> list[tuple[str, JSON]]:
        if not self.thinking_started or self.thinking_done:
            return []
        self.thinking_done = True
        stop = self._stop()
        self.index += 1
        return [stop]

    def _text(self, text: str) -> list[tuple[str, JSON]]:
        events = self._close_thinking()
        if not self.text_started:
            self.text_started = True
            events.append(self._start({"type": "text", "text": ""}))
        events.append(self._delta({"type": "text_delta", "text": text}))
        return events

    def _tool_call(self, call: JSON) -> list[tuple[str, JSON]]:
        events = self._close_thinking()
        if self.text_started:
            events.append(self._stop())
            self.index += 1
            self.text_started = False
        function = call["function"]
        block = {"type": "tool_use", "id": call["id"], "name": function["name"], "input": {}}
        arguments = orjson.dumps(function["arguments"]).decode()
        events += [
            self._start(block),
            self._delta({"type": "input_json_delta", "partial_json": arguments}),
            self._stop(),
        ]
        self.tools_sent += 1
        self.index += 1
        return events

    def _done(self, chunk: JSON) -> list[tuple[str, JSON]]:
        events = []
        if self.text_started or (self.thinking_started and not self.thinking_done):
            events.append(self._stop())
        usage = {"input_tokens": chunk["prompt_eval_count"], "output_tokens": chunk["eval_count"]}
        delta: JSON = {"stop_reason": stop_reason(chunk["done_reason"], self.tools_sent > 0)}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events


def render(
    answer_: Answer, message_id: str, model: str, estimate: int
) -> tuple[tuple[bytes, ...], bytes]:
    """The stream's frames: one per chat chunk (its events together), and the tail."""
    converter = StreamConverter(message_id, model, estimate)

    def frame(chunk: JSON) -> bytes:
        return b"".join(event(name, data) for name, data in converter.process(chunk))

    frames = tuple(frame(chunk) for chunk in answer_.chunks)
    return frames, frame(answer_.final)


def messages(call: Call) -> Reply:
    """POST /v1/messages."""
    if bad := body_error(call, Dialect.ANTHROPIC):
        return bad
    body = call.body
    if bad := _bind_error(body):
        return bad
    if not body.get("model"):
        return error(Dialect.ANTHROPIC, 400, "model is required")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] <= 0:
        return error(Dialect.ANTHROPIC, 400, "max_tokens is required and must be positive")
    if not body.get("messages"):
        return error(Dialect.ANTHROPIC, 400, "messages is required")
    model = checked_model(call, Dialect.ANTHROPIC, "chat")
    if isinstance(model, Static):
        return model
    result = answer(to_turn(body, model), call)
    message_id = f"msg_{call.next_id():024x}"
    frames, tail = render(result, message_id, body["model"], estimate_input_tokens(body))
    whole = messages_response(message_id, result.whole | {"model": body["model"]})
    return TruncatingGeneration(
        dialect=Dialect.ANTHROPIC,
        stream=body.get("stream") is True,
        content_type=wire.SSE if body.get("stream") is True else wire.OPENAI_JSON,
        whole=wire.dumps(whole) + b"\n",
        frames=frames,
        tail=(tail,),
    )
