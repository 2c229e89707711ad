"""A test double for Ollama: a real HTTP server on loopback speaking its wire format.

Start it, point the code under test at `double.base_url`, script failures with
the behaviour knobs, then assert on what the double received::

    @pytest.fixture
    def double() -> Iterator[OllamaDouble]:
        with OllamaDouble() as running:          # start() ... stop()
            yield running

    def test_chat(double: OllamaDouble) -> None:
        client = ollama.Client(host=double.base_url)
        client.chat(model="llama3.1:8b", messages=[{"role": "user", "content": "hi"}])
        assert double.requests[0].json["model"] == "llama3.1:8b"

The server runs on its own thread and event loop, so sync and async tests (and
an app under test in the test's loop) can use it alike.

Surfaces (field names as in ollama/ollama's api/types.go and openai/openai.go):

- `GET|HEAD /`, `GET /api/version`, `GET /api/tags`, `GET /api/ps`, `POST /api/show`
- `POST /api/generate`, `POST /api/chat`: NDJSON streams (`stream` defaults to
  true) ending in a `done: true` chunk with `done_reason` and integer metrics.
- `POST /api/embed`, `POST /api/embeddings` (legacy)
- `POST /v1/chat/completions`, `POST /v1/completions`: SSE when `stream` is true
  (default false), `data: [DONE]` last; `stream_options.include_usage` adds a
  `choices: []` usage chunk before it.
- `POST /v1/embeddings` (`encoding_format` float or base64), `GET /v1/models`
  (`data: null` when `models` is empty), `GET /v1/models/{model}`.
- `POST /v1/messages` (Anthropic Messages, `anthropic_surface.py`) and
  `POST /v1/responses` (OpenAI Responses, `responses_surface.py`): converted to a chat
  turn and answered as Ollama's translating layers answer (`chat_model.py`: thinking
  models, forced tool calls); streams are `event:` + `data:` SSE.
- Anything else: 404 `404 page not found`. A `Host` that is not loopback or
  `localhost` gets a bare 403, as Ollama bound to loopback answers.

Bodies are read the way Ollama's Go decoder reads them (`gojson`: keys matched
case-insensitively with Go's folding, the last repeat wins, maps merged, wrong types
refused with 400), and the handlers answer from that reading; each recorded request
keeps it (`reading`) and what Ollama decides from it (`decision`: model, stream flag,
output cap, options, keep_alive, tool types, include_usage).

Deterministic output (so tests can assert exact numbers):

- Prompt tokens: `count_prompt_tokens(body)`, the words of prompt/system/
  message contents/input, at least 1.
- Completion: `completion_tokens` tokens `"tok0 "`, `"tok1 "`, ... one per stream
  chunk, capped by `options.num_predict` (native) or `max_tokens` (OpenAI) when
  positive. Reaching the cap makes `done_reason`/`finish_reason` `length`
  (cap <= completion_tokens), otherwise `stop`. `eval_count` and
  `completion_tokens` equal the tokens emitted.
- Metrics: `wire.metrics(prompt_tokens, eval_count)`; embeddings:
  `embedding_for(text)`, 8 floats exact in float32.
- Errors: native `{"error": "..."}`; OpenAI `{"error": {message, type, param,
  code}}`; Anthropic `{"type": "error", "error": {type, message}}` on
  `/v1/messages`. Unknown model: 404 `model "x" not found, try pulling it first`.
  Chat/generate on an embedding model (name contains "embed"): 400.

Public API:

- `OllamaDouble(models=(...), *, host="127.0.0.1", port=0)`; `start() -> str`
  (base URL; after `stop()` re-binds the same port), `stop()` (drops open
  connections mid-response), context manager, `base_url`, `port`.
- `models: list[str]`: mutable, read on every request.
- Knobs, on the double (all models) or on `behaviour_for(model)` (one model,
  initialised from the current defaults): `completion_tokens`, `chunk_delay`,
  `first_byte_delay`, `fail_with`, `mid_stream_error_after`, `error_message`,
  `disconnect_after`, `hang`. See `Behaviour`. They apply to requests that name
  a model; `hang`, `first_byte_delay` and `fail_with` act before any validation.
- `gpu` (`Gpu`): how Ollama runs model requests: `parallel` at once (0 =
  unlimited, the default), the rest waiting first in, first out (`max_queue`
  beyond which it answers 503 `QUEUE_FULL`; None = unbounded), `token_seconds`
  per generated token. Applies to every request that runs a model (generation
  and embeddings), after validation.
- `requests` (snapshots of `RecordedRequest`, in arrival order, including
  rejected ones), `clear()`, `in_flight()`, `wait_for_requests(n, timeout)`,
  `wait_for_cancellation(timeout)`, `wait_until_idle(timeout)`; waits raise
  `TimeoutError`. A request's outcome (`status`, `completed`, `cancelled`) is
  recorded before its last byte is written, so it is already visible once the
  client has the whole response. `arrived_at`, `started_at` (generation began on
  the GPU) and `finished_at` are `time.monotonic()` values of the test process;
  `timeline` turns them into concurrency, busy time and waits at "Ollama".
"""

from . import timeline, wire
from .behaviour import QUEUE_FULL, RUNNER_CRASHED, Behaviour
from .gpu import Gpu
from .recording import RecordedRequest
from .server import DEFAULT_MODELS, OllamaDouble
from .wire import completion_tokens, count_prompt_tokens, embedding_for, metrics

__all__ = [
    "DEFAULT_MODELS",
    "QUEUE_FULL",
    "RUNNER_CRASHED",
    "Behaviour",
    "Gpu",
    "OllamaDouble",
    "RecordedRequest",
    "completion_tokens",
    "count_prompt_tokens",
    "embedding_for",
    "metrics",
    "timeline",
    "wire",
]
