"""The observers of the §12 surfaces (docs/REFERENCE.md §12): token counts from the
final usage of each API, text for prompt logging, the end of a stream recognised, and
upstream error events relayed sanitised. Every other event passes through unchanged."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from neuronetz_gateway.proxy.messages import MessagesObserver
from neuronetz_gateway.proxy.responses import ResponsesObserver
from neuronetz_gateway.proxy.usage import Usage

LEAK = "runner died at /srv/ollama/llama.go on 10.9.8.7:11434"


def events(*pairs: tuple[str, dict[str, Any]]) -> bytes:
    """An SSE block of `event:` + `data:` frames, as Ollama writes them."""
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for name, data in pairs
    )


def text_delta(text: str) -> tuple[str, dict[str, Any]]:
    delta = {"type": "text_delta", "text": text}
    return "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}


def message_start(input_tokens: int) -> tuple[str, dict[str, Any]]:
    message = {"id": "msg_1", "usage": {"input_tokens": input_tokens, "output_tokens": 0}}
    return "message_start", {"type": "message_start", "message": message}


def message_delta(usage: dict[str, int]) -> tuple[str, dict[str, Any]]:
    data = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage}
    return "message_delta", data


MESSAGE_STOP = ("message_stop", {"type": "message_stop"})


@pytest.mark.parametrize("collect_text", [False, True])
def test_a_messages_stream_is_counted_from_message_delta(collect_text: bool) -> None:
    observer = MessagesObserver(collect_text=collect_text)
    blocks = [
        events(message_start(11)),
        events(text_delta("tok0 "), text_delta("tok1 ")),
        events(message_delta({"input_tokens": 9, "output_tokens": 2}), MESSAGE_STOP),
    ]

    relayed = [observer.sse(block) for block in blocks]

    assert relayed == blocks
    assert observer.usage == Usage(9, 2)  # not message_start's estimate
    assert observer.content_chunks == 2
    assert observer.ended
    assert observer.text == (["tok0 ", "tok1 "] if collect_text else [])


def test_a_model_writing_event_names_is_counted_by_its_events() -> None:
    observer = MessagesObserver()
    block = events(text_delta("event: content_block_delta"), text_delta("data: x\n\n"))

    assert observer.sse(block) == block
    assert observer.content_chunks == 2


def test_a_message_delta_without_input_tokens_keeps_the_estimate() -> None:
    observer = MessagesObserver()

    observer.sse(events(message_start(11), message_delta({"output_tokens": 4}), MESSAGE_STOP))

    assert observer.usage == Usage(11, 4)


def test_a_messages_stream_without_message_stop_has_not_ended() -> None:
    observer = MessagesObserver()

    observer.sse(events(message_start(3), text_delta("a")))

    assert not observer.ended
    assert observer.usage is None
    assert observer.content_chunks == 1


def test_an_upstream_error_event_is_relayed_sanitised() -> None:
    observer = MessagesObserver()
    error = {"type": "error", "error": {"type": "api_error", "message": LEAK}}

    out = observer.sse(events(text_delta("a"), ("error", error)))

    assert observer.error
    frames = out.split(b"\n\n")
    assert frames[0] == events(text_delta("a")).rstrip(b"\n")
    name, data = frames[1].split(b"\n", 1)
    assert name == b"event: error"
    body = orjson.loads(data.removeprefix(b"data: "))
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert body["error"]["message"].startswith("runner died at")
    assert b"/srv/ollama" not in out
    assert b"10.9.8.7" not in out


def test_a_whole_message_is_counted_and_only_its_text_blocks_logged() -> None:
    observer = MessagesObserver(collect_text=True)
    message = {
        "type": "message",
        "content": [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "text", "text": "hello"},
            {"type": "tool_use", "name": "f", "input": {}},
        ],
        "usage": {"input_tokens": 7, "output_tokens": 3},
    }

    observer.whole(message)

    assert observer.usage == Usage(7, 3)
    assert observer.text == ["hello"]


def response(status: str, usage: dict[str, int] | None, **extra: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": status, "usage": usage, **extra}


def output_delta(text: str) -> tuple[str, dict[str, Any]]:
    data = {"type": "response.output_text.delta", "item_id": "m", "delta": text}
    return "response.output_text.delta", data


@pytest.mark.parametrize("collect_text", [False, True])
@pytest.mark.parametrize("terminal", ["response.completed", "response.incomplete"])
def test_a_responses_stream_is_counted_from_its_terminal_event(
    collect_text: bool, terminal: str
) -> None:
    observer = ResponsesObserver(collect_text=collect_text)
    status = terminal.removeprefix("response.")
    final = response(status, {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7})
    blocks = [
        events(
            (
                "response.created",
                {"type": "response.created", "response": response("in_progress", None)},
            )
        ),
        events(output_delta("tok0 "), output_delta("tok1 ")),
        events((terminal, {"type": terminal, "response": final})),
    ]

    relayed = [observer.sse(block) for block in blocks]

    assert relayed == blocks
    assert observer.usage == Usage(5, 2)
    assert observer.content_chunks == 2
    assert observer.ended
    assert not observer.error
    assert observer.text == (["tok0 ", "tok1 "] if collect_text else [])


def test_an_upstream_response_failed_is_relayed_sanitised() -> None:
    observer = ResponsesObserver()
    failed = response("failed", None, error={"code": "server_error", "message": LEAK})

    out = observer.sse(events(("response.failed", {"type": "response.failed", "response": failed})))

    assert observer.ended
    assert observer.error
    body = orjson.loads(out.split(b"data: ", 1)[1])
    assert body["response"]["error"]["code"] == "server_error"
    assert body["response"]["error"]["message"].startswith("runner died at")
    assert b"/srv/ollama" not in out
    assert b"10.9.8.7" not in out


def test_an_upstream_error_event_on_responses_is_relayed_sanitised() -> None:
    observer = ResponsesObserver()

    out = observer.sse(events(("error", {"type": "error", "message": LEAK})))

    assert observer.error
    assert not observer.ended  # no terminal event: the client is told it was cut off
    assert out.startswith(b"event: error\ndata: ")
    assert b"/srv/ollama" not in out


def test_a_whole_response_is_counted_and_its_output_text_logged() -> None:
    observer = ResponsesObserver(collect_text=True)
    output = [
        {"type": "reasoning", "summary": []},
        {"type": "message", "content": [{"type": "output_text", "text": "hi"}]},
        {"type": "function_call", "name": "f", "arguments": "{}"},
    ]

    observer.whole(response("completed", {"input_tokens": 4, "output_tokens": 1}, output=output))

    assert observer.usage == Usage(4, 1)
    assert observer.text == ["hi"]
