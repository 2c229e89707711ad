"""The double's GPU: parallelism, a first-in-first-out queue behind it, token pace, and
the per-request records tests measure concurrency and waiting with."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.doubles.conftest import CHAT_MODEL, EMBED_MODEL, HELLO, READ_TIMEOUT
from tests.doubles.ollama import QUEUE_FULL, OllamaDouble, RecordedRequest, timeline
from tests.doubles.ollama.gpu import Gpu


def _chat(base_url: str, content: str, *, stream: bool = True) -> httpx.Response:
    body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
    }
    with httpx.Client(base_url=base_url, timeout=30) as client:
        return client.post("/api/chat", json=body)


def _in_order(double: OllamaDouble, contents: list[str]) -> list[httpx.Response]:
    """Send one request per content, each after the double recorded the previous one."""
    with ThreadPoolExecutor(len(contents)) as pool:
        futures = []
        for index, content in enumerate(contents):
            futures.append(pool.submit(_chat, double.base_url, content))
            double.wait_for_requests(index + 1)
        return [future.result() for future in futures]


def _content(request: RecordedRequest) -> str:
    assert isinstance(request.json, dict)
    return str(request.json["messages"][0]["content"])


def test_parallel_requests_generate_at_once_and_the_rest_wait_in_arrival_order(
    double: OllamaDouble,
) -> None:
    double.gpu.parallel = 2
    double.gpu.token_seconds = 0.02
    double.completion_tokens = 5

    responses = _in_order(double, [f"r{i}" for i in range(6)])

    assert [r.status_code for r in responses] == [200] * 6
    records = double.requests
    assert timeline.max_overlap(timeline.generating(records)) == 2
    started = sorted(records, key=lambda r: r.started_at or 0.0)
    assert [_content(r) for r in started] == [f"r{i}" for i in range(6)]
    # Each request after the first two waited for a runner: the k-th of them started
    # once the k-th answer had finished.
    finishes = sorted(r.finished_at or 0.0 for r in records)
    assert all((r.started_at or 0.0) >= finishes[k] for k, r in enumerate(started[2:]))
    assert min(timeline.waits(records[2:])) > 0


def test_unlimited_by_default_every_request_starts_when_it_arrives(
    double: OllamaDouble,
) -> None:
    double.gpu.token_seconds = 0.1
    double.completion_tokens = 20  # two seconds each: all five overlap, even on a busy machine

    _in_order(double, [f"r{i}" for i in range(5)])

    assert timeline.max_overlap(timeline.generating(double.requests)) == 5
    assert max(timeline.waits(double.requests)) < 0.1


def test_each_token_takes_token_seconds_streamed_or_not(double: OllamaDouble) -> None:
    double.gpu.token_seconds = 0.03
    double.completion_tokens = 6

    assert _chat(double.base_url, "s").status_code == 200
    assert _chat(double.base_url, "w", stream=False).status_code == 200

    for record in double.requests:
        assert record.started_at is not None
        assert record.finished_at is not None
        assert record.finished_at - record.started_at >= 6 * 0.03 * 0.9


def test_embeddings_take_a_runner_too(double: OllamaDouble) -> None:
    double.gpu.parallel = 1
    double.gpu.token_seconds = 0.05

    def embed() -> int:
        with httpx.Client(base_url=double.base_url) as client:
            body = {"model": EMBED_MODEL, "input": "x"}
            return client.post("/api/embed", json=body).status_code

    with ThreadPoolExecutor(3) as pool:
        statuses = list(pool.map(lambda _: embed(), range(3)))

    assert statuses == [200] * 3
    assert timeline.max_overlap(timeline.generating(double.requests)) == 1


def test_a_full_queue_answers_503_in_the_surface_shape(double: OllamaDouble) -> None:
    double.gpu.parallel = 1
    double.gpu.max_queue = 1
    double.gpu.token_seconds = 0.05
    double.completion_tokens = 20  # one second per answer: the queue stays full

    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(_chat, double.base_url, "running")
        double.wait_for_requests(1)
        waiting = pool.submit(_chat, double.base_url, "waiting")
        double.wait_for_requests(2)
        with httpx.Client(base_url=double.base_url) as client:
            native = client.post("/api/chat", json={"model": CHAT_MODEL, "messages": HELLO})
            openai_style = client.post(
                "/v1/chat/completions", json={"model": CHAT_MODEL, "messages": HELLO}
            )
        assert running.result().status_code == waiting.result().status_code == 200

    assert (native.status_code, native.json()) == (503, {"error": QUEUE_FULL[1]})
    assert openai_style.status_code == 503
    assert openai_style.json()["error"]["message"] == QUEUE_FULL[1]
    refused = [r for r in double.requests if r.status == 503]
    assert len(refused) == 2
    assert all(r.started_at is None for r in refused)


def test_a_waiting_request_whose_client_leaves_never_generates(double: OllamaDouble) -> None:
    double.gpu.parallel = 1
    double.gpu.token_seconds = 0.05
    double.completion_tokens = 8

    def leaving() -> None:
        body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "leaves"}]}
        with (
            httpx.Client(base_url=double.base_url, timeout=READ_TIMEOUT) as client,
            pytest.raises(httpx.ReadTimeout),
        ):
            client.post("/api/chat", json=body)

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(_chat, double.base_url, "first")
        double.wait_for_requests(1)
        left = pool.submit(leaving)
        double.wait_for_requests(2)
        assert _content(double.wait_for_cancellation()) == "leaves"
        third = pool.submit(_chat, double.base_url, "third")
        left.result()
        assert first.result().status_code == third.result().status_code == 200

    by_content = {_content(r): r for r in double.requests}
    assert by_content["leaves"].started_at is None
    assert by_content["leaves"].cancelled
    assert timeline.max_overlap(timeline.generating(double.requests)) == 1


def test_timeline_helpers() -> None:
    intervals = [(0.0, 2.0), (1.0, 3.0), (3.0, 4.0)]

    assert timeline.max_overlap(intervals) == 2  # (1, 3) ends as (3, 4) begins
    assert timeline.busy_time(intervals, 0.0, 4.0, at_least=1) == pytest.approx(4.0)
    assert timeline.busy_time(intervals, 0.0, 4.0, at_least=2) == pytest.approx(1.0)
    assert timeline.busy_time(intervals, 1.5, 2.5, at_least=2) == pytest.approx(0.5)


async def test_a_waiter_cancelled_as_a_runner_frees_does_not_keep_it() -> None:
    """The runner freed in the same turn as a waiter's cancellation goes to the next
    waiter, not to the cancelled one (which would hold it forever)."""
    gpu = Gpu()
    gpu.parallel = 1
    release = asyncio.Event()
    served: list[str] = []

    async def request(name: str) -> None:
        async with gpu.runner():
            served.append(name)
            if name == "first":
                await release.wait()

    first = asyncio.create_task(request("first"))
    await asyncio.sleep(0)
    leaving = asyncio.create_task(request("leaving"))
    staying = asyncio.create_task(request("staying"))
    await asyncio.sleep(0)
    release.set()  # the first request ends in the next turn ...
    leaving.cancel()  # ... just before the cancelled waiter leaves the queue
    await asyncio.wait_for(asyncio.gather(first, staying), 2)

    assert leaving.cancelled()
    assert served == ["first", "staying"]
