"""`POST /v1/responses`: Ollama's OpenAI Responses layer (`openai/responses.go`,
`ResponsesMiddleware` in `middleware/openai.go`).

The request is converted as `FromResponsesRequest` does (`instructions` as a system
message, `input` as a string or items, `max_output_tokens` as `num_predict`,
`reasoning.effort` as `think`), answered by `chat_model`, and rendered as
`ResponsesStreamConverter` renders it: `response.created`, `response.in_progress`,
output items with their deltas, and `response.completed` carrying `usage`
(`input_tokens`, `output_tokens`, `total_tokens`). Every event has a `sequence_number`.
Errors use the OpenAI shape. A stream that breaks just ends, without
`response.completed` (Ollama drops the in-band error line).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from . import wire
from .anthropic_surface import TruncatingGeneration, event
from .chat_model import JSON, Answer, Tool, Turn, answer, required_parameters, thinks_by_default
from .routes import Call, Dialect, Reply, Static, body_error, checked_model, error

EFFORTS = {"none": False, "minimal": True, "low": True, "medium": True, "high": True}
EFFORTS |= {"max": True, "xhigh": True, "ultra": True}
_CONTENT_TYPES = ("input_text", "input_image", "output_text", "input_file")


class InvalidRequest(Exception):
    """A request `FromResponsesRequest` (or its JSON binding) refuses with 400."""


def _content_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}content must be a string or array")
    text = ""
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind not in _CONTENT_TYPES:
            raise InvalidRequest(f"{where}content[{i}]: unknown content type: {kind or ''}")
        if kind == "input_file":
            raise InvalidRequest("file inputs are not currently supported")
        if kind in ("input_text", "output_text") and isinstance(part.get("text"), str):
            text += part["text"]
    return text


def _item_messages(item: Any, index: int) -> list[JSON]:
    where = f"input[{index}]: "
    if not isinstance(item, Mapping):
        raise InvalidRequest(f"{where}input item missing required 'type' field")
    kind = item.get("type") or ("message" if item.get("role") else "")
    if kind == "message":
        return [{"role": item.get("role"), "content": _content_text(item.get("content"), where)}]
    if kind == "function_call":
        return [{"role": "assistant", "content": ""}]
    if kind == "function_call_output":
        return [{"role": "tool", "content": _content_text(item.get("output"), where)}]
    if kind in ("reasoning", "web_search_call"):
        return []
    if not kind:
        raise InvalidRequest(f"{where}input item missing required 'type' field")
    raise InvalidRequest(f'{where}unknown input item type: "{kind}"')


def _tools(declared: Any) -> list[Tool]:
    tools: list[Tool] = []
    for tool in declared or ():
        if not isinstance(tool, Mapping):
            continue
        if tool.get("type") == "web_search":
            tools.append(Tool("web_search", ("query",)))
        elif tool.get("type") == "namespace":
            prefix = f"{tool['name']}." if tool.get("name") else ""
            tools += [Tool(prefix + t.name, t.required) for t in _tools(tool.get("tools"))]
        elif isinstance(tool.get("name"), str):
            tools.append(Tool(tool["name"], required_parameters(tool.get("parameters"))))
    return tools


def _forced_tool(choice: Any, tools: list[Tool]) -> str | None:
    if not tools:
        return None
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        name = choice.get("name")
        return name if isinstance(name, str) else None
    return tools[0].name if choice == "required" else None


def to_turn(body: Mapping[str, Any], model: str) -> Turn:
    """The chat request Ollama runs for a Responses request; `InvalidRequest` for a 400."""
    messages: list[JSON] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    given = body.get("input")
    if isinstance(given, str):
        if given:
            messages.append({"role": "user", "content": given})
    elif isinstance(given, list):
        for index, item in enumerate(given):
            messages += _item_messages(item, index)
    elif given is not None:
        raise InvalidRequest("input must be a string or array")
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, Mapping) else None
    if effort not in (None, "") and effort not in EFFORTS:
        raise InvalidRequest(f'invalid reasoning value: "{effort}"')
    tools = _tools(body.get("tools"))
    return Turn(
        model=model,
        messages=messages,
        tools=tools,
        think=EFFORTS.get(effort) if isinstance(effort, str) else None,
        forced_tool=_forced_tool(body.get("tool_choice"), tools),
        cap=body.get("max_output_tokens"),
    )


# -- the response object (buildResponseObject, ToResponse) ------------------------------


def usage(counts: tuple[int, int]) -> JSON:
    prompt, completion = counts
    return {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def response_object(
    body: Mapping[str, Any], response_id: str, status: str, output: list[JSON], use: JSON | None
) -> JSON:
    """The `response` of Ollama's Responses answers, echoing what the request set."""
    given = body.get("reasoning")
    reasoning: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    effort, summary = reasoning.get("effort") or None, reasoning.get("summary") or None
    text = body.get("text")
    text_format = text.get("format") if isinstance(text, Mapping) else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "completed_at": int(time.time()) if status == "completed" else None,
        "status": status,
        "incomplete_details": None,
        "model": body.get("model"),
        "previous_response_id": None,
        "instructions": body.get("instructions") or None,
        "output": output,
        "error": None,
        "tools": list(body.get("tools") or []),
        "tool_choice": "auto",
        "truncation": body.get("truncation") or "disabled",
        "parallel_tool_calls": True,
        "text": {"format": text_format or {"type": "text"}},
        "top_p": body.get("top_p", 1.0) if body.get("top_p") is not None else 1.0,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "top_logprobs": 0,
        "temperature": body.get("temperature") if body.get("temperature") is not None else 1.0,
        "reasoning": {"effort": effort, "summary": summary} if effort or summary else None,
        "usage": use,
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "store": False,
        "background": body.get("background") is True,
        "service_tier": "default",
        "metadata": {},
        "safety_identifier": None,
        "prompt_cache_key": None,
    }


def _text_part(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str, status: str = "completed") -> JSON:
    content = [_text_part(text)] if status == "completed" else []
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _reasoning_item(item_id: str, thinking: str) -> JSON:
    summary = [{"type": "summary_text", "text": thinking}]
    return {"id": item_id, "type": "reasoning", "summary": summary, "encrypted_content": thinking}


def _function_item(item_id: str, call: JSON, status: str = "completed") -> JSON:
    function = call["function"]
    arguments = wire.dumps(function["arguments"]).decode() if status == "completed" else ""
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call["id"],
        "name": function["name"],
        "arguments": arguments,
    }


def whole_response(body: Mapping[str, Any], response_id: str, item_id: str, whole: JSON) -> JSON:
    """A non-streamed Responses answer (`ToResponse`)."""
    message = whole["message"]
    output: list[JSON] = []
    if message.get("thinking"):
        output.append(_reasoning_item(f"rs_{response_id}", message["thinking"]))
    calls = message.get("tool_calls") or []
    if calls:
        output += [_function_item(f"fc_{response_id}_{i}", c) for i, c in enumerate(calls)]
    else:
        output.append(_message_item(item_id, message["content"]))
    counts = (whole["prompt_eval_count"], whole["eval_count"])
    return response_object(body, response_id, "completed", output, usage(counts))


class StreamConverter:
    """Ollama's `ResponsesStreamConverter`: chat chunks in, Responses events out."""

    def __init__(self, body: Mapping[str, Any], response_id: str, item_id: str) -> None:
        self.body = body
        self.response_id = response_id
        self.item_id = item_id
        self.sequence = 0
        self.first = True
        self.output_index = 0
        self.text_started = False
        self.tools_sent = False
        self.text = ""
        self.thinking = ""
        self.reasoning_id: str | None = None
        self.completed: list[JSON] = []

    def _event(self, name: str, data: JSON) -> tuple[str, JSON]:
        data = {"type": name, "sequence_number": self.sequence} | data
        self.sequence += 1
        return name, data

    def process(self, chunk: JSON) -> list[tuple[str, JSON]]:
        events = []
        message = chunk["message"]
        if self.first:
            self.first = False
            for name in ("response.created", "response.in_progress"):
                response = response_object(self.body, self.response_id, "in_progress", [], None)
                events.append(self._event(name, {"response": response}))
        if message.get("thinking"):
            events += self._thinking(message["thinking"])
        if message.get("tool_calls"):
            events += self._finish_reasoning() + self._calls(message["tool_calls"])
            self.tools_sent = True
        elif not self.tools_sent and message.get("content"):
            events += self._text(message["content"])
        if chunk["done"]:
            events += self._completion(chunk)
        return events

    def _thinking(self, thinking: str) -> list[tuple[str, JSON]]:
        events = []
        if self.reasoning_id is None:
            self.reasoning_id = f"rs_{self.sequence}"
            item = {"id": self.reasoning_id, "type": "reasoning", "summary": []}
            events.append(
                self._event(
                    "response.output_item.added", {"output_index": self.output_index, "item": item}
                )
            )
        self.thinking += thinking
        delta = {
            "item_id": self.reasoning_id,
            "output_index": self.output_index,
            "summary_index": 0,
            "delta": thinking,
        }
        events.append(self._event("response.reasoning_summary_text.delta", delta))
        return events

    def _finish_reasoning(self) -> list[tuple[str, JSON]]:
        if self.reasoning_id is None:
            return []
        item = _reasoning_item(self.reasoning_id, self.thinking)
        self.completed.append(item)
        index, item_id = self.output_index, self.reasoning_id
        self.reasoning_id, self.thinking = None, ""
        self.output_index += 1
        done = {
            "item_id": item_id,
            "output_index": index,
            "summary_index": 0,
            "text": item["encrypted_content"],
        }
        return [
            self._event("response.reasoning_summary_text.done", done),
            self._event("response.output_item.done", {"output_index": index, "item": item}),
        ]

    def _calls(self, calls: list[JSON]) -> list[tuple[str, JSON]]:
        events = []
        for i, call in enumerate(calls):
            index = self.output_index + i
            item_id = f"fc_{self.sequence}_{i}"
            item = _function_item(item_id, call)
            self.completed.append(item)
            arguments = item["arguments"]
            events += [
                self._event(
                    "response.output_item.added",
                    {"output_index": index, "item": _function_item(item_id, call, "in_progress")},
                ),
                self._event(
                    "response.function_call_arguments.delta",
                    {"item_id": item_id, "output_index": index, "delta": arguments},
                ),
                self._event(
                    "response.function_call_arguments.done",
                    {"item_id": item_id, "output_index": index, "arguments": arguments},
                ),
                self._event("response.output_item.done", {"output_index": index, "item": item}),
            ]
        self.output_index += len(calls)
        return events

    def _text(self, text: str) -> list[tuple[str, JSON]]:
        events = self._finish_reasoning()
        where = {"item_id": self.item_id, "output_index": self.output_index, "content_index": 0}
        if not self.text_started:
            self.text_started = True
            item = _message_item(self.item_id, "", "in_progress")
            events.append(
                self._event(
                    "response.output_item.added", {"output_index": self.output_index, "item": item}
                )
            )
            events.append(
                self._event("response.content_part.added", where | {"part": _text_part("")})
            )
        self.text += text
        events.append(
            self._event("response.output_text.delta", where | {"delta": text, "logprobs": []})
        )
        return events

    def _completion(self, chunk: JSON) -> list[tuple[str, JSON]]:
        events = self._finish_reasoning()
        output = list(self.completed)
        if self.text_started:
            item = _message_item(self.item_id, self.text)
            output.append(item)
        if self.text_started and not self.tools_sent:
            where = {"item_id": self.item_id, "output_index": self.output_index, "content_index": 0}
            events += [
                self._event(
                    "response.output_text.done", where | {"text": self.text, "logprobs": []}
                ),
                self._event("response.content_part.done", where | {"part": _text_part(self.text)}),
                self._event(
                    "response.output_item.done", {"output_index": self.output_index, "item": item}
                ),
            ]
        counts = (chunk["prompt_eval_count"], chunk["eval_count"])
        response = response_object(self.body, self.response_id, "completed", output, usage(counts))
        events.append(self._event("response.completed", {"response": response}))
        return events


def render(answer_: Answer, converter: StreamConverter) -> tuple[tuple[bytes, ...], bytes]:
    """The stream's frames: one per chat chunk (its events together), and the tail."""

    def frame(chunk: JSON) -> bytes:
        return b"".join(event(name, data) for name, data in converter.process(chunk))

    return tuple(frame(chunk) for chunk in answer_.chunks), frame(answer_.final)


def responses(call: Call) -> Reply:
    """POST /v1/responses."""
    if bad := body_error(call, Dialect.OPENAI):
        return bad
    body = call.body
    try:
        turn = to_turn(body, str(body.get("model") or ""))
    except InvalidRequest as refused:
        return error(Dialect.OPENAI, 400, str(refused))
    model = checked_model(call, Dialect.OPENAI, "chat")
    if isinstance(model, Static):
        return model
    if turn.think and not thinks_by_default(model):
        return error(Dialect.OPENAI, 400, f'"{body["model"]}" does not support thinking')
    turn.model = model
    result = answer(turn, call)
    number = call.next_id()
    response_id, item_id = f"resp_{number}", f"msg_{number}"
    frames, tail = render(result, StreamConverter(body, response_id, item_id))
    stream = body.get("stream") is True
    return TruncatingGeneration(
        dialect=Dialect.OPENAI,
        stream=stream,
        content_type=wire.SSE if stream else wire.OPENAI_JSON,
        whole=wire.dumps(whole_response(body, response_id, item_id, result.whole)) + b"\n",
        frames=frames,
        tail=(tail,),
    )
