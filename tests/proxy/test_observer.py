"""The stream observer: token counts, sanitised in-band errors, usage-chunk dropping."""

from __future__ import annotations

import orjson

from neuronetz_gateway.proxy.observer import StreamObserver
from neuronetz_gateway.proxy.usage import Usage


def ndjson(*messages: object) -> bytes:
    return b"".join(orjson.dumps(m) + b"\n" for m in messages)


def sse(*messages: object) -> bytes:
    return b"".join(b"data: " + orjson.dumps(m) + b"\n\n" for m in messages) + b"data: [DONE]\n\n"


def test_native_final_chunk_counts_and_passthrough() -> None:
    observer = StreamObserver()
    block = ndjson(
        {"model": "m", "message": {"role": "assistant", "content": "hi"}, "done": False},
        {"model": "m", "done": True, "prompt_eval_count": 7, "eval_count": 3},
    )
    assert observer.ndjson(block) == block
    assert observer.usage == Usage(7, 3)
    assert observer.content_chunks == 1


def test_native_in_band_error_is_sanitised() -> None:
    observer = StreamObserver()
    out = observer.ndjson(ndjson({"error": "runner at 10.2.3.4:5 died in /opt/x/y"}))
    assert observer.error
    assert b"10.2.3.4" not in out
    assert b"/opt/x" not in out
    assert orjson.loads(out)["error"].startswith("runner at")


def test_native_text_collection() -> None:
    observer = StreamObserver(collect_text=True)
    observer.ndjson(ndjson({"response": "a", "done": False}, {"response": "b", "done": False}))
    assert observer.text == ["a", "b"]


def test_sse_usage_chunk_dropped_when_not_asked_for() -> None:
    observer = StreamObserver(keep_usage_chunk=False)
    block = sse(
        {"choices": [{"delta": {"content": "x"}}]},
        {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}},
    )
    out = observer.sse(block)
    assert observer.usage == Usage(4, 1)
    assert b'"usage"' not in out
    assert out.endswith(b"data: [DONE]\n\n")
    assert out.count(b"data: ") == 2


def test_sse_usage_chunk_kept_when_asked_for() -> None:
    observer = StreamObserver(keep_usage_chunk=True)
    block = sse({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1}})
    assert observer.sse(block) == block


def test_sse_usage_on_content_chunks_is_removed_not_the_content() -> None:
    observer = StreamObserver(keep_usage_chunk=False)
    out = observer.sse(
        sse({"choices": [{"text": "x"}], "usage": {"prompt_tokens": 0, "completion_tokens": 0}})
    )
    assert b'"usage"' not in out
    assert b'"text":"x"' in out


def test_sse_error_frame_is_sanitised() -> None:
    observer = StreamObserver()
    out = observer.sse(sse({"error": {"message": "boom at /var/lib/x/y", "code": None}}))
    assert observer.error
    assert b"/var/lib" not in out
