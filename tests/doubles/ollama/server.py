"""The HTTP server: a background thread running aiohttp's low-level server."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from . import gojson, routes, table, wire
from .behaviour import QUEUE_FULL, Behaviour
from .gpu import Gpu, GpuBusy
from .recording import Entry, RecordedRequest, Recorder

DEFAULT_MODELS = ("llama3.1:8b", "qwen2.5:0.5b", "nomic-embed-text:latest")
_HANG_POLL = 0.01
_LIFECYCLE_TIMEOUT = 10.0


class OllamaDouble(Behaviour):
    """A fake Ollama on loopback; see the package docstring for the contract.

    The double itself holds the default behaviour knobs (inherited from
    `Behaviour`); `behaviour_for(model)` overrides them for one model.
    """

    def __init__(
        self,
        models: Sequence[str] = DEFAULT_MODELS,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__()
        self.models: list[str] = list(models)
        # Parallelism, queue and token pace of model requests (see `Gpu`).
        self.gpu = Gpu()
        self.host = host
        self.port = port
        self._recorder = Recorder()
        self._overrides: dict[str, Behaviour] = {}
        self._loaded: list[str] = []
        self._ids = itertools.count(1)
        self._lifecycle = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._stopping = False

    def __repr__(self) -> str:
        state = "running" if self._thread else "stopped"
        return f"<OllamaDouble {self.base_url} {state} models={self.models!r}>"

    # -- lifecycle -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT`; the port is the bound one once started."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> str:
        """Serve in a background thread; returns the base URL. No-op when running.

        After `stop()` it binds the same port again, so a client configured with
        the old URL sees the server come back.
        """
        with self._lifecycle:
            if self._thread is not None:
                return self.base_url
            self._stopping = False
            self._start_error = None
            ready = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(ready,), name="ollama-double", daemon=True
            )
            thread.start()
            if not ready.wait(_LIFECYCLE_TIMEOUT):
                raise RuntimeError("the Ollama double did not start in time")
            if self._start_error is not None:
                thread.join(_LIFECYCLE_TIMEOUT)
                raise self._start_error
            self._thread = thread
            return self.base_url

    def stop(self) -> None:
        """Stop listening and drop open connections mid-response, like a killed server."""
        with self._lifecycle:
            thread, loop, shutdown = self._thread, self._loop, self._shutdown
            if thread is None or loop is None or shutdown is None:
                return
            self._stopping = True
            loop.call_soon_threadsafe(shutdown.set)
            thread.join(_LIFECYCLE_TIMEOUT)
            self._thread = None

    def __enter__(self) -> OllamaDouble:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        asyncio.run(self._serve(ready))

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._shutdown = asyncio.Event()
        # handler_cancellation: a client hanging up cancels its handler, which is
        # how the double notices cancellations while it sleeps or hangs.
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            self._start_error = exc
            await runner.cleanup()
            ready.set()
            return
        self.port = site.port
        ready.set()
        await self._shutdown.wait()
        await site.stop()
        for connection in server.connections:
            connection.force_close()
        await runner.cleanup()

    # -- inspection ------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshots of every request received since the last `clear()`, in order."""
        return self._recorder.requests()

    def clear(self) -> None:
        """Forget recorded requests and cancellations."""
        self._recorder.clear()

    def in_flight(self) -> int:
        """Requests currently being answered."""
        return self._recorder.in_flight()

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `n` requests were recorded; returns all of them."""
        return self._recorder.wait_for_requests(n, timeout)

    def wait_for_cancellation(self, timeout: float = 5.0) -> RecordedRequest:
        """Block until a client abandons a request the double was still answering.

        Each cancellation is returned once. The double only notices while it is
        still answering, so give it something to do (`chunk_delay`, `hang`).
        """
        return self._recorder.wait_for_cancellation(timeout)

    def wait_until_idle(self, timeout: float = 5.0) -> None:
        """Block until no request is in flight."""
        self._recorder.wait_until_idle(timeout)

    def behaviour_for(self, model: str) -> Behaviour:
        """The knobs for one model, created from the current defaults on first use."""
        key = wire.normalise(model)
        if key not in self._overrides:
            self._overrides[key] = self.copy()
        return self._overrides[key]

    # -- request handling --------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raw = await request.content.read()
        entry = self._recorder.arrived(_record(request, raw))
        try:
            return await self._answer(request, entry, raw)
        except asyncio.CancelledError:
            # Either the client hung up, or stop() dropped the connection.
            self._recorder.finished(entry, completed=False, cancelled=not self._stopping)
            raise
        except ConnectionError:
            # A write found the connection gone; aiohttp drops an unsendable
            # response quietly, whereas an exception would be logged as a 500.
            self._recorder.finished(entry, completed=False, cancelled=not self._stopping)
            return web.Response(status=499)
        finally:
            if not entry.done:
                self._recorder.finished(entry, completed=False)

    async def _answer(
        self, request: web.BaseRequest, entry: Entry, raw: bytes
    ) -> web.StreamResponse:
        if not routes.host_allowed(request.headers.get("Host")):
            return await self._send(request, entry, routes.Static(403))
        found = table.route_for(request.method, request.path)
        if found is None:
            return await self._send(
                request, entry, routes.Static(404, b"404 page not found", "text/plain")
            )
        route, path_model = found
        body = entry.snapshot.json
        reading = entry.snapshot.reading
        if isinstance(body, dict) and isinstance(reading, gojson.GoRefusal):
            return await self._send(request, entry, routes.error(route.dialect, 400, str(reading)))
        if isinstance(body, dict) and isinstance(reading, gojson.GoReading):
            body = reading.body  # the fields as Ollama reads them
        model = route.model_of(body, path_model)
        behaviour: Behaviour = self
        if model is not None:
            behaviour = self._overrides.get(wire.normalise(model), self)
            await self._hold(behaviour)
            if behaviour.fail_with is not None:
                status, message = behaviour.fail_with
                return await self._send(
                    request, entry, routes.error(route.dialect, status, message)
                )
        call = routes.Call(
            body=body,
            raw=raw,
            path_model=path_model,
            behaviour=behaviour,
            models=list(self.models),
            loaded=[m for m in self._loaded if routes.find_model(self.models, m)],
            next_id=lambda: next(self._ids) % 1000,
        )
        reply = route.handler(call)
        if route.runs_model and model is not None and _succeeded(reply):
            self._mark_loaded(model)
            return await self._run_on_gpu(request, entry, reply, behaviour, route.dialect)
        if isinstance(reply, routes.Static):
            return await self._send(request, entry, reply)
        return await self._generate(request, entry, reply, behaviour)

    async def _hold(self, behaviour: Behaviour) -> None:
        """Apply `hang` and `first_byte_delay` before anything is sent."""
        while behaviour.hang and not self._stopping:
            await asyncio.sleep(_HANG_POLL)
        if behaviour.first_byte_delay > 0:
            await asyncio.sleep(behaviour.first_byte_delay)

    async def _run_on_gpu(
        self,
        request: web.BaseRequest,
        entry: Entry,
        reply: routes.Reply,
        behaviour: Behaviour,
        dialect: routes.Dialect,
    ) -> web.StreamResponse:
        """Answer a model request once a GPU runner is free, at the GPU's token pace."""
        try:
            async with self.gpu.runner():
                self._recorder.update(entry, started_at=time.monotonic())
                if isinstance(reply, routes.Static):  # an embedding: one step
                    await asyncio.sleep(self.gpu.token_seconds)
                    return await self._send(request, entry, reply)
                if not reply.stream:
                    await asyncio.sleep(self.gpu.token_seconds * len(reply.frames))
                return await self._generate(request, entry, reply, behaviour)
        except GpuBusy:
            return await self._send(request, entry, routes.error(dialect, *QUEUE_FULL))

    def _mark_loaded(self, model: str) -> None:
        name = wire.normalise(model)
        if name not in self._loaded:
            self._loaded.append(name)

    async def _send(
        self, request: web.BaseRequest, entry: Entry, reply: routes.Static
    ) -> web.StreamResponse:
        response = web.Response(status=reply.status, body=reply.body or None)
        if reply.content_type is not None:
            response.headers["Content-Type"] = reply.content_type
        self._recorder.update(entry, status=reply.status)
        self._recorder.finished(entry, completed=True)
        await response.prepare(request)
        await response.write_eof()
        return response

    async def _generate(
        self,
        request: web.BaseRequest,
        entry: Entry,
        reply: routes.Generation,
        behaviour: Behaviour,
    ) -> web.StreamResponse:
        if not reply.stream:
            return await self._generate_whole(request, entry, reply, behaviour)
        if _cut(behaviour, 0, len(reply.frames)) == "error":
            # Like Ollama: an error before any content still gets a real status.
            failure = routes.error(reply.dialect, 500, behaviour.error_message)
            return await self._send(request, entry, failure)
        response = web.StreamResponse(status=200)
        response.headers["Content-Type"] = reply.content_type
        self._recorder.update(entry, status=200)
        await response.prepare(request)
        sent = 0
        while (cut := _cut(behaviour, sent, len(reply.frames))) is None:
            if sent == len(reply.frames):
                break
            if sent:
                await asyncio.sleep(self.gpu.token_delay(behaviour.chunk_delay))
            # Counted before the write, so a client holding the chunk sees it counted.
            self._recorder.update(entry, chunks_sent=sent + 1)
            await response.write(reply.frames[sent])
            sent += 1
        if cut == "disconnect":
            self._recorder.finished(entry, completed=False)
            _drop(request)
            return response
        if cut == "error":
            self._recorder.finished(entry, completed=True)
            await response.write(reply.error_frame(behaviour.error_message))
        else:
            if sent:
                await asyncio.sleep(self.gpu.token_delay(behaviour.chunk_delay))
            self._recorder.finished(entry, completed=True)
            await response.write(b"".join(reply.tail))
        await response.write_eof()
        return response

    async def _generate_whole(
        self,
        request: web.BaseRequest,
        entry: Entry,
        reply: routes.Generation,
        behaviour: Behaviour,
    ) -> web.StreamResponse:
        # The model "fails" before the answer is complete, so the client gets no body.
        if behaviour.disconnect_after is not None:
            self._recorder.finished(entry, completed=False)
            _drop(request)
            return web.Response(status=500)
        if behaviour.mid_stream_error_after is not None:
            failure = routes.error(reply.dialect, 500, behaviour.error_message)
            return await self._send(request, entry, failure)
        whole = routes.Static(200, reply.whole, reply.content_type)
        return await self._send(request, entry, whole)


def _record(request: web.BaseRequest, raw: bytes) -> RecordedRequest:
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
    try:
        parsed: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    return RecordedRequest(
        method=request.method,
        path=request.path,
        raw_path=request.raw_path,
        headers=headers,
        body=raw,
        json=parsed,
        reading=gojson.read(request.path, raw) if request.method == "POST" else None,
    )


def _succeeded(reply: routes.Reply) -> bool:
    return isinstance(reply, routes.Generation) or reply.status == 200


def _cut(behaviour: Behaviour, sent: int, total: int) -> str | None:
    """Whether the stream breaks before its next frame, and how.

    A knob of N fires after N token chunks, or after the last token when the
    answer is shorter, so a scripted failure is never silently skipped.
    """
    if behaviour.disconnect_after is not None and sent >= min(behaviour.disconnect_after, total):
        return "disconnect"
    if behaviour.mid_stream_error_after is not None and sent >= min(
        behaviour.mid_stream_error_after, total
    ):
        return "error"
    return None


def _drop(request: web.BaseRequest) -> None:
    """Close the connection with the response unfinished, as a crashing server would."""
    if request.transport is not None:
        request.transport.close()
