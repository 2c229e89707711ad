"""The Ollama double speaks the wire format of docs/REFERENCE.md §9: endpoints, generation,
embeddings, the OpenAI layer and the Host check, driven by the official clients."""

from __future__ import annotations

import base64
import struct

import httpx
import ollama
import openai
import orjson
import pytest

from tests.doubles.conftest import (
    CHAT_MODEL,
    EMBED_MODEL,
    FINAL_INTEGERS,
    HELLO,
    ndjson,
    sse,
)
from tests.doubles.ollama import (
    OllamaDouble,
    completion_tokens,
    count_prompt_tokens,
    embedding_for,
    metrics,
    wire,
)

# -- plain endpoints ------------------------------------------------------------


def test_root_answers_get_and_head(http: httpx.Client) -> None:
    got = http.get("/")
    head = http.head("/")

    assert (got.status_code, got.text) == (200, "Ollama is running")
    assert head.status_code == 200
    assert head.content == b""


def test_version(http: httpx.Client) -> None:
    answer = http.get("/api/version").json()

    assert set(answer) == {"version"}
    assert answer["version"].count(".") == 2


def test_unknown_route_is_gins_404(http: httpx.Client) -> None:
    response = http.get("/api/nope")

    assert (response.status_code, response.text) == (404, "404 page not found")


def test_tags_lists_models_and_follows_changes(
    double: OllamaDouble, http: httpx.Client, native: ollama.Client
) -> None:
    raw = http.get("/api/tags").json()["models"]
    first = raw[0]
    assert [m["name"] for m in raw] == [CHAT_MODEL, "qwen2.5:0.5b", EMBED_MODEL]
    assert first["model"] == first["name"]
    assert len(first["digest"]) == 64
    assert isinstance(first["size"], int)
    assert set(first["details"]) >= {
        "format",
        "family",
        "families",
        "parameter_size",
        "quantization_level",
    }

    double.models.append("mistral")
    double.models.remove("qwen2.5:0.5b")

    names = [m.model for m in native.list().models]
    assert names == [CHAT_MODEL, EMBED_MODEL, "mistral:latest"]


def test_ps_lists_models_that_ran(http: httpx.Client, native: ollama.Client) -> None:
    assert native.ps().models == []

    native.generate(model=CHAT_MODEL, prompt="hi")
    loaded = http.get("/api/ps").json()["models"]

    assert [m["name"] for m in loaded] == [CHAT_MODEL]
    assert {"expires_at", "size_vram", "digest", "details"} <= set(loaded[0])


def test_show_describes_a_model(native: ollama.Client) -> None:
    shown = native.show(CHAT_MODEL)

    assert f"# FROM {CHAT_MODEL}" in (shown.modelfile or "")
    assert shown.model_dump()["details"] == wire.details(CHAT_MODEL)
    assert (shown.modelinfo or {})["general.architecture"] == "llama"
    assert shown.parameters
    assert shown.template
    assert shown.capabilities == ["completion"]


def test_show_of_unknown_model_is_404(native: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        native.show("ghost:1b")

    assert caught.value.status_code == 404
    assert caught.value.error == 'model "ghost:1b" not found, try pulling it first'


# -- native generation -----------------------------------------------------------


def test_native_chat_streams_one_token_per_chunk(native: ollama.Client) -> None:
    parts = list(native.chat(model=CHAT_MODEL, messages=HELLO, stream=True))

    *chunks, final = parts
    assert [c.message.content for c in chunks] == completion_tokens(5)
    assert not any(c.done for c in chunks)
    assert final.done
    assert final.done_reason == "stop"
    assert final.message.content == ""
    assert final.prompt_eval_count == count_prompt_tokens({"messages": HELLO}) == 4
    assert final.eval_count == 5


def test_native_stream_is_the_default_and_ndjson(http: httpx.Client) -> None:
    body = {"model": CHAT_MODEL, "prompt": "one two three"}
    response = http.post("/api/generate", json=body)

    lines = ndjson(response)
    assert response.headers["content-type"] == "application/x-ndjson"
    assert len(lines) == 6
    for chunk in lines[:-1]:
        assert set(chunk) == {"model", "created_at", "response", "done"}
        assert chunk["done"] is False
    final = lines[-1]
    assert (final["done"], final["done_reason"]) == (True, "stop")
    assert all(type(final[key]) is int for key in FINAL_INTEGERS)
    assert {k: final[k] for k in FINAL_INTEGERS} == metrics(3, 5)


def test_native_generate_without_streaming(native: ollama.Client) -> None:
    answer = native.generate(model=CHAT_MODEL, prompt="one two", stream=False)

    assert answer.response == "tok0 tok1 tok2 tok3 tok4 "
    assert (answer.done, answer.done_reason) == (True, "stop")
    assert (answer.prompt_eval_count, answer.eval_count) == (2, 5)


def test_completion_tokens_knob_sets_the_answer_length(
    double: OllamaDouble, native: ollama.Client
) -> None:
    double.completion_tokens = 2

    answer = native.chat(model=CHAT_MODEL, messages=HELLO)

    assert answer.message.content == "tok0 tok1 "
    assert answer.eval_count == 2


@pytest.mark.parametrize(
    ("num_predict", "emitted", "reason"),
    [(2, 2, "length"), (5, 5, "length"), (9, 5, "stop"), (-1, 5, "stop")],
)
def test_num_predict_caps_the_native_answer(
    native: ollama.Client, num_predict: int, emitted: int, reason: str
) -> None:
    parts = list(
        native.chat(
            model=CHAT_MODEL, messages=HELLO, stream=True, options={"num_predict": num_predict}
        )
    )

    assert len(parts) == emitted + 1
    assert parts[-1].eval_count == emitted
    assert parts[-1].done_reason == reason


def test_empty_prompt_only_loads_the_model(http: httpx.Client) -> None:
    response = http.post("/api/generate", json={"model": CHAT_MODEL})

    assert response.json()["done_reason"] == "load"


def test_unknown_model_is_404_on_the_native_surface(http: httpx.Client) -> None:
    response = http.post("/api/chat", json={"model": "ghost:1b", "messages": HELLO})

    assert response.status_code == 404
    assert response.json() == {"error": 'model "ghost:1b" not found, try pulling it first'}


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"", "missing request body"), (b'{"messages": []}', "model is required")],
)
def test_bad_native_requests_are_400(http: httpx.Client, body: bytes, message: str) -> None:
    response = http.post("/api/chat", content=body)

    assert response.status_code == 400
    assert response.json() == {"error": message}


def test_chat_with_an_embedding_model_is_400(native: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        native.chat(model=EMBED_MODEL, messages=HELLO)

    assert caught.value.status_code == 400


# -- embeddings --------------------------------------------------------------------


def test_embed_returns_one_vector_per_input(native: ollama.Client) -> None:
    answer = native.embed(model=EMBED_MODEL, input=["first text", "second"])

    assert answer.embeddings == [embedding_for("first text"), embedding_for("second")]
    assert answer.prompt_eval_count == 3
    assert (answer.total_duration, answer.load_duration) == (1_800_000, 1_000_000)


def test_legacy_embeddings(native: ollama.Client) -> None:
    answer = native.embeddings(model=EMBED_MODEL, prompt="some text")

    assert list(answer.embedding) == embedding_for("some text")
    assert len(answer.embedding) == 8


def test_openai_embeddings_as_float_and_base64(http: httpx.Client, oai: openai.OpenAI) -> None:
    # The openai client asks for base64 unless told otherwise, and decodes it.
    decoded = oai.embeddings.create(model=EMBED_MODEL, input=["a b", "c"])
    raw = http.post(
        "/v1/embeddings",
        json={"model": EMBED_MODEL, "input": "a b", "encoding_format": "base64"},
    ).json()

    assert [d.embedding for d in decoded.data] == [embedding_for("a b"), embedding_for("c")]
    assert decoded.usage.prompt_tokens == decoded.usage.total_tokens == 3
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack("<8f", packed)) == embedding_for("a b")


# -- OpenAI layer --------------------------------------------------------------------


def test_openai_chat_is_not_streamed_by_default(http: httpx.Client, oai: openai.OpenAI) -> None:
    raw = http.post("/v1/chat/completions", json={"model": CHAT_MODEL, "messages": HELLO})
    completion = oai.chat.completions.create(model=CHAT_MODEL, messages=HELLO)

    assert raw.headers["content-type"] == "application/json"
    assert raw.json()["object"] == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.system_fingerprint == "fp_ollama"
    assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4 "
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.model_dump(include={"prompt_tokens", "completion_tokens"}) == {
        "prompt_tokens": 4,
        "completion_tokens": 5,
    }
    assert completion.usage.total_tokens == 9


def test_openai_chat_stream_without_usage(http: httpx.Client) -> None:
    body = {"model": CHAT_MODEL, "messages": HELLO, "stream": True}
    response = http.post("/v1/chat/completions", json=body)

    *payloads, done = sse(response)
    chunks = [orjson.loads(p) for p in payloads]
    assert response.headers["content-type"] == "text/event-stream"
    assert done == "[DONE]"
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == [*completion_tokens(5), ""]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 5 + ["stop"]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all("usage" not in c for c in chunks)
    assert len({c["id"] for c in chunks}) == 1


def test_openai_chat_stream_with_include_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model=CHAT_MODEL,
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    *content, usage_chunk = chunks
    assert "".join(c.choices[0].delta.content or "" for c in content) == "".join(
        completion_tokens(5)
    )
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (4, 5)
    assert all(c.usage is None for c in content)


@pytest.mark.parametrize(("max_tokens", "emitted", "reason"), [(3, 3, "length"), (50, 5, "stop")])
def test_max_tokens_caps_openai_answers(
    oai: openai.OpenAI, max_tokens: int, emitted: int, reason: str
) -> None:
    chat = oai.chat.completions.create(
        model=CHAT_MODEL,
        messages=HELLO,
        max_tokens=max_tokens,
    )
    text = oai.completions.create(model=CHAT_MODEL, prompt="x", max_tokens=max_tokens)

    assert chat.usage is not None
    assert chat.usage.completion_tokens == emitted
    assert chat.choices[0].finish_reason == reason
    assert text.usage is not None
    assert text.usage.completion_tokens == emitted
    assert text.choices[0].finish_reason == reason


def test_openai_completions(oai: openai.OpenAI) -> None:
    completion = oai.completions.create(model=CHAT_MODEL, prompt="say it")

    assert completion.object == "text_completion"
    assert completion.choices[0].text == "".join(completion_tokens(5))
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2


def test_openai_completions_stream_carries_ollamas_zero_usage(http: httpx.Client) -> None:
    body = {
        "model": CHAT_MODEL,
        "prompt": "say it",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = http.post("/v1/completions", json=body)

    *payloads, done = sse(response)
    *chunks, last = [orjson.loads(p) for p in payloads]
    assert done == "[DONE]"
    assert all(c["object"] == "text_completion" for c in chunks)
    assert [c["choices"][0]["text"] for c in chunks] == [*completion_tokens(5), ""]
    assert all(c["usage"]["total_tokens"] == 0 for c in chunks)
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}


def test_v1_models_list_and_retrieve(oai: openai.OpenAI) -> None:
    listed = [m.id for m in oai.models.list()]
    one = oai.models.retrieve(CHAT_MODEL)

    assert listed == [CHAT_MODEL, "qwen2.5:0.5b", EMBED_MODEL]
    assert (one.id, one.object, one.owned_by) == (CHAT_MODEL, "model", "library")
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("ghost:1b")


def test_v1_models_data_is_null_without_models(double: OllamaDouble, http: httpx.Client) -> None:
    double.models.clear()

    answer = http.get("/v1/models").json()

    assert answer == {"object": "list", "data": None}


def test_openai_error_shape(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": "ghost:1b", "messages": HELLO})

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": 'model "ghost:1b" not found, try pulling it first',
            "type": "not_found_error",
            "param": None,
            "code": None,
        }
    }


def test_openai_chat_without_messages_is_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=CHAT_MODEL, messages=[])

    assert caught.value.code is None
    assert "too short" in caught.value.message


# -- Host check -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:11434", "10.0.0.5", "[2001:db8::1]"]
)
def test_non_local_host_gets_a_bare_403(
    double: OllamaDouble, http: httpx.Client, host: str
) -> None:
    response = http.get("/api/tags", headers={"Host": host})

    assert response.status_code == 403
    assert response.content == b""
    assert double.requests[-1].header("host") == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:11434", "localhost:80", "[::1]:11434"])
def test_local_host_is_served(http: httpx.Client, host: str) -> None:
    response = http.get("/api/tags", headers={"Host": host})

    assert response.status_code == 200
