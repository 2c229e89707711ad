"""The Ollama double's scripted behaviour: failures, delays, disconnects, recording,
lifecycle and token counting."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import ollama
import openai
import orjson
import pytest

from tests.doubles.conftest import (
    CHAT_MODEL,
    HELLO,
    READ_TIMEOUT,
    ndjson,
    sse,
)
from tests.doubles.ollama import (
    QUEUE_FULL,
    OllamaDouble,
    completion_tokens,
    count_prompt_tokens,
)

# -- scripted failures ----------------------------------------------------------------


def test_fail_with_uses_each_surfaces_error_shape(
    double: OllamaDouble, http: httpx.Client, native: ollama.Client, oai: openai.OpenAI
) -> None:
    double.fail_with = QUEUE_FULL

    with pytest.raises(ollama.ResponseError) as native_error:
        native.chat(model=CHAT_MODEL, messages=HELLO)
    with pytest.raises(openai.APIStatusError) as openai_error:
        oai.chat.completions.create(model=CHAT_MODEL, messages=HELLO)

    assert (native_error.value.status_code, native_error.value.error) == QUEUE_FULL
    assert openai_error.value.status_code == 503
    assert openai_error.value.body == {
        "message": QUEUE_FULL[1],
        "type": "api_error",
        "param": None,
        "code": None,
    }
    assert http.get("/api/tags").status_code == 200


def test_behaviour_for_overrides_one_model(double: OllamaDouble, native: ollama.Client) -> None:
    double.behaviour_for("qwen2.5:0.5b").fail_with = (500, "boom")

    with pytest.raises(ollama.ResponseError, match="boom"):
        native.generate(model="qwen2.5:0.5b", prompt="hi")
    assert native.generate(model=CHAT_MODEL, prompt="hi").done


def test_native_mid_stream_error_is_an_in_band_line(
    double: OllamaDouble, http: httpx.Client
) -> None:
    double.mid_stream_error_after = 2
    double.error_message = "failed to read /var/lib/ollama/blob at 10.1.2.3"

    response = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": HELLO})

    lines = ndjson(response)
    assert response.status_code == 200
    assert [line["message"]["content"] for line in lines[:-1]] == completion_tokens(2)
    assert lines[-1] == {"error": "failed to read /var/lib/ollama/blob at 10.1.2.3"}
    assert double.requests[-1].completed


def test_native_mid_stream_error_reaches_the_ollama_client(
    double: OllamaDouble, native: ollama.Client
) -> None:
    double.mid_stream_error_after = 1
    parts = native.generate(model=CHAT_MODEL, prompt="hi", stream=True)

    assert next(parts).response == "tok0 "
    with pytest.raises(ollama.ResponseError, match="llama runner process has terminated"):
        next(parts)


def test_mid_stream_error_after_the_last_token_still_fires(
    double: OllamaDouble, http: httpx.Client
) -> None:
    double.mid_stream_error_after = 99

    lines = ndjson(http.post("/api/generate", json={"model": CHAT_MODEL, "prompt": "x"}))

    assert len(lines) == 6
    assert set(lines[-1]) == {"error"}


def test_openai_mid_stream_error_is_an_error_frame_without_done(
    double: OllamaDouble, http: httpx.Client, oai: openai.OpenAI
) -> None:
    double.mid_stream_error_after = 3
    body = {"model": CHAT_MODEL, "messages": HELLO, "stream": True}

    payloads = sse(http.post("/v1/chat/completions", json=body))
    with pytest.raises(openai.APIError, match="llama runner process has terminated"):
        list(oai.chat.completions.create(model=CHAT_MODEL, messages=HELLO, stream=True))

    assert len(payloads) == 4
    assert orjson.loads(payloads[-1])["error"]["type"] == "api_error"
    assert "[DONE]" not in payloads


def test_error_before_the_first_chunk_is_a_500(double: OllamaDouble, http: httpx.Client) -> None:
    double.mid_stream_error_after = 0
    body = {"model": CHAT_MODEL, "messages": HELLO, "stream": True}

    native = http.post("/api/chat", json=body)
    openai_style = http.post("/v1/chat/completions", json=body)

    assert (native.status_code, native.json()) == (500, {"error": double.error_message})
    assert openai_style.status_code == 500
    assert openai_style.json()["error"]["message"] == double.error_message


def test_mid_stream_error_without_streaming_is_a_500(
    native: ollama.Client, double: OllamaDouble
) -> None:
    double.mid_stream_error_after = 2

    with pytest.raises(ollama.ResponseError) as caught:
        native.chat(model=CHAT_MODEL, messages=HELLO, stream=False)

    assert caught.value.status_code == 500


def test_disconnect_after_cuts_the_stream(double: OllamaDouble, http: httpx.Client) -> None:
    double.disconnect_after = 2
    lines: list[str] = []

    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/api/chat", json={"model": CHAT_MODEL, "messages": HELLO}) as response,
    ):
        lines.extend(response.iter_lines())

    assert len(lines) == 2
    double.wait_until_idle()
    record = double.requests[-1]
    assert (record.chunks_sent, record.completed, record.cancelled) == (2, False, False)


def test_disconnect_without_streaming_sends_nothing(
    double: OllamaDouble, http: httpx.Client
) -> None:
    double.disconnect_after = 0

    with pytest.raises(httpx.RemoteProtocolError):
        http.post(
            "/api/generate",
            json={"model": CHAT_MODEL, "prompt": "x", "stream": False},
        )


def test_first_byte_delay_holds_the_status_line(double: OllamaDouble, http: httpx.Client) -> None:
    double.first_byte_delay = 0.5
    body = {"model": CHAT_MODEL, "prompt": "x"}

    with pytest.raises(httpx.ReadTimeout):
        http.post("/api/generate", json=body, timeout=READ_TIMEOUT)
    double.first_byte_delay = 0

    assert http.post("/api/generate", json=body).status_code == 200


def test_chunk_delay_spaces_the_chunks(double: OllamaDouble, http: httpx.Client) -> None:
    double.chunk_delay = 0.05
    started = time.monotonic()

    http.post("/api/generate", json={"model": CHAT_MODEL, "prompt": "x"})

    # Five tokens and the final chunk: five gaps between six frames.
    assert time.monotonic() - started >= 0.25


def test_hang_holds_requests_until_released(double: OllamaDouble, native: ollama.Client) -> None:
    double.hang = True
    answers: list[ollama.GenerateResponse] = []
    worker = threading.Thread(
        target=lambda: answers.append(native.generate(model=CHAT_MODEL, prompt="x"))
    )
    worker.start()

    double.wait_for_requests(1)
    assert double.in_flight() == 1
    assert answers == []
    double.hang = False
    worker.join(5)

    assert [a.done for a in answers] == [True]
    assert double.in_flight() == 0


# -- recording and cancellation ------------------------------------------------------


def test_requests_are_recorded_as_received(double: OllamaDouble, http: httpx.Client) -> None:
    http.post(
        "/api/generate?trace=1",
        content=b'{"model": "llama3.1:8b", "prompt": "x", "stream": false}',
        headers={"X-Tenant-Id": "acme", "Content-Type": "application/json"},
    )

    (record,) = double.wait_for_requests(1)
    assert (record.method, record.path, record.raw_path) == (
        "POST",
        "/api/generate",
        "/api/generate?trace=1",
    )
    assert ("X-Tenant-Id", "acme") in record.headers
    assert record.body == b'{"model": "llama3.1:8b", "prompt": "x", "stream": false}'
    assert record.json == {"model": CHAT_MODEL, "prompt": "x", "stream": False}
    assert record.model == CHAT_MODEL
    assert (record.status, record.completed, record.cancelled) == (200, True, False)

    double.clear()
    assert double.requests == []


def test_wait_for_requests_times_out(double: OllamaDouble) -> None:
    with pytest.raises(TimeoutError):
        double.wait_for_requests(1, timeout=0.05)


def test_client_closing_a_stream_is_seen_as_cancellation(
    double: OllamaDouble, http: httpx.Client
) -> None:
    double.completion_tokens = 100
    double.chunk_delay = 0.02
    body = {"model": CHAT_MODEL, "messages": HELLO}

    with http.stream("POST", "/api/chat", json=body) as response:
        first = next(response.iter_lines())

    record = double.wait_for_cancellation()
    assert orjson.loads(first)["message"]["content"] == "tok0 "
    assert (record.cancelled, record.completed) == (True, False)
    assert 1 <= record.chunks_sent < 100
    double.wait_until_idle()
    assert double.in_flight() == 0


def test_client_timing_out_on_a_hung_request_is_a_cancellation(
    double: OllamaDouble, http: httpx.Client
) -> None:
    double.hang = True

    with pytest.raises(httpx.ReadTimeout):
        http.post(
            "/api/generate",
            json={"model": CHAT_MODEL, "prompt": "x"},
            timeout=READ_TIMEOUT,
        )

    assert double.wait_for_cancellation().path == "/api/generate"


# -- lifecycle -------------------------------------------------------------------------


def test_stop_and_start_again_on_the_same_port(double: OllamaDouble) -> None:
    url = double.base_url
    assert httpx.get(url).status_code == 200

    double.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    assert double.start() == url

    assert httpx.get(url).status_code == 200


def test_stop_drops_a_stream_in_progress(double: OllamaDouble, http: httpx.Client) -> None:
    double.completion_tokens = 100
    double.chunk_delay = 0.02
    body = {"model": CHAT_MODEL, "messages": HELLO}

    with http.stream("POST", "/api/chat", json=body) as response:
        lines = response.iter_lines()
        next(lines)
        double.stop()
        with pytest.raises(httpx.RemoteProtocolError):
            list(lines)

    assert not double.requests[-1].completed
    assert not double.requests[-1].cancelled


def test_a_taken_port_fails_start(double: OllamaDouble) -> None:
    rival = OllamaDouble(port=double.port)

    with pytest.raises(OSError, match="address already in use"):
        rival.start()


async def test_usable_from_async_tests(double: OllamaDouble) -> None:
    async with ollama.AsyncClient(host=double.base_url) as client:
        parts = [p async for p in await client.chat(model=CHAT_MODEL, messages=HELLO, stream=True)]

    assert parts[-1].done


# -- token counting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        ({"prompt": "one two  three", "system": "four"}, 4),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a b"}]}]}, 2),
        ({"input": ["a b", "c"]}, 3),
        ({"input": [[1, 2, 3]]}, 3),
        ({"prompt": ""}, 1),
        (None, 1),
    ],
)
def test_count_prompt_tokens(body: Any, tokens: int) -> None:
    assert count_prompt_tokens(body) == tokens
