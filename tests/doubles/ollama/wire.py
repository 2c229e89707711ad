"""Ollama's wire formats as pure functions: JSON shapes, token counts, embeddings.

Field names and order follow the real server (`api/types.go`, `openai/openai.go`,
`middleware/openai.go` in ollama/ollama). Nothing here does I/O, so every function
can be called from a test to compute the exact bytes or numbers it should expect.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

EMBEDDING_SIZE = 8
MODIFIED_AT = "2024-07-23T10:15:30.123456789Z"
NATIVE_JSON = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
OPENAI_JSON = "application/json"

# Deterministic, so tests can assert exact metric values.
LOAD_DURATION = 1_000_000
PROMPT_EVAL_NS_PER_TOKEN = 100_000
EVAL_NS_PER_TOKEN = 1_000_000
OVERHEAD_DURATION = 500_000

JSON = dict[str, Any]


def dumps(obj: Any) -> bytes:
    """Compact JSON, as Go's encoder writes it."""
    return orjson.dumps(obj)


def now_rfc3339() -> str:
    """The current UTC time in the RFC 3339 form Go's `time.Time` marshals to."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- token arithmetic -------------------------------------------------------


def _texts(body: Mapping[str, Any]) -> list[str]:
    texts: list[str] = []
    for key in ("prompt", "system"):
        if isinstance(value := body.get(key), str):
            texts.append(value)
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p["text"] for p in content if isinstance(p, Mapping) and "text" in p]
    return texts


def _input_tokens(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        # OpenAI also accepts pre-tokenised input: a list of ints is that many tokens.
        return sum(1 if isinstance(v, int) else _input_tokens(v) for v in value)
    return 0


def count_prompt_tokens(body: Any) -> int:
    """Prompt tokens the double reports for a request body (min 1).

    The count is the number of whitespace-separated words in `prompt`, `system`,
    every message `content` (strings, or the `text` of content parts) and `input`
    (string, list of strings, or pre-tokenised lists of ints, one token per int).
    """
    if not isinstance(body, Mapping):
        return 1
    words = sum(len(t.split()) for t in _texts(body)) + _input_tokens(body.get("input"))
    return max(1, words)


def completion_tokens(n: int) -> list[str]:
    """The text of the first `n` tokens the double generates: `tok0 `, `tok1 `, ..."""
    return [f"tok{i} " for i in range(n)]


def embedding_for(text: str) -> list[float]:
    """The deterministic vector for `text`; exact in float32, so base64 round-trips."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(b - 128) / 128 for b in digest[:EMBEDDING_SIZE]]


def embedding_base64(vector: Sequence[float]) -> str:
    """OpenAI's `encoding_format: base64`: little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def metrics(prompt_tokens: int, eval_count: int) -> JSON:
    """The timing and count fields of a final native chunk (durations in ns)."""
    prompt_eval = prompt_tokens * PROMPT_EVAL_NS_PER_TOKEN
    evaluation = eval_count * EVAL_NS_PER_TOKEN
    return {
        "total_duration": LOAD_DURATION + prompt_eval + evaluation + OVERHEAD_DURATION,
        "load_duration": LOAD_DURATION,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": prompt_eval,
        "eval_count": eval_count,
        "eval_duration": evaluation,
    }


# -- model catalogue --------------------------------------------------------


def normalise(name: str) -> str:
    """Ollama's model name with the implicit `:latest` tag made explicit."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def is_embedding_model(name: str) -> bool:
    """Whether the double treats `name` as embedding-only (its name mentions embed)."""
    return "embed" in name.lower()


def _parameters(name: str) -> float:
    tag = name.rsplit(":", 1)[-1].lower()
    if match := re.fullmatch(r"(\d+(?:\.\d+)?)([bm])", tag):
        return float(match[1]) * (1e9 if match[2] == "b" else 1e6)
    return 137e6 if is_embedding_model(name) else 7e9


def details(name: str) -> JSON:
    """The `details` object of a model in tags, ps and show."""
    base = name.rsplit("/", 1)[-1]
    letters = re.match(r"[a-z]*", base)
    family = (letters[0] if letters else "") or "llama"
    if is_embedding_model(name):
        family = "bert"
    params = _parameters(name)
    size = f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": size,
        "quantization_level": "F16" if is_embedding_model(name) else "Q4_K_M",
    }


def digest(name: str) -> str:
    """A stable sha256 digest for a model name."""
    return hashlib.sha256(normalise(name).encode()).hexdigest()


def size(name: str) -> int:
    """A stable on-disk size in bytes, about what the quantised weights would take."""
    bytes_per_param = 2 if is_embedding_model(name) else 0.6
    return int(_parameters(name) * bytes_per_param)


def tags_entry(name: str) -> JSON:
    """One model of `GET /api/tags`."""
    full = normalise(name)
    return {
        "name": full,
        "model": full,
        "modified_at": MODIFIED_AT,
        "size": size(full),
        "digest": digest(full),
        "details": details(full),
    }


def ps_entry(name: str) -> JSON:
    """One model of `GET /api/ps`: a tags entry plus when it unloads and its VRAM."""
    entry = tags_entry(name)
    del entry["modified_at"]
    expires = datetime.now(UTC) + timedelta(minutes=5)
    entry["expires_at"] = expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    entry["size_vram"] = entry["size"]
    entry["context_length"] = 4096
    return entry


def show(name: str) -> JSON:
    """`POST /api/show` for a model."""
    full = normalise(name)
    info = details(full)
    arch = info["family"]
    embedding = is_embedding_model(full)
    return {
        "license": "LLAMA 3.1 COMMUNITY LICENSE AGREEMENT",
        "modelfile": (
            '# Modelfile generated by "ollama show"\n'
            "# To build a new Modelfile based on this, replace FROM with:\n"
            f"# FROM {full}\n\n"
            f"FROM /usr/share/ollama/.ollama/models/blobs/sha256-{digest(full)}\n"
            'TEMPLATE "{{ .Prompt }}"\n'
        ),
        "parameters": 'stop                           "<|eot_id|>"',
        "template": "{{ .Prompt }}",
        "details": info,
        "model_info": {
            "general.architecture": arch,
            "general.parameter_count": int(_parameters(full)),
            f"{arch}.context_length": 2048 if embedding else 131072,
            f"{arch}.embedding_length": 768 if embedding else 4096,
        },
        "capabilities": ["embedding"] if embedding else ["completion"],
        "modified_at": MODIFIED_AT,
    }


# -- native generation ------------------------------------------------------


def native_chunk(kind: str, model: str, created_at: str, text: str) -> JSON:
    """A `done: false` chunk of /api/chat (`kind="chat"`) or /api/generate."""
    if kind == "chat":
        return {
            "model": model,
            "created_at": created_at,
            "message": {"role": "assistant", "content": text},
            "done": False,
        }
    return {"model": model, "created_at": created_at, "response": text, "done": False}


def native_final(
    kind: str, model: str, created_at: str, text: str, done_reason: str, counts: tuple[int, int]
) -> JSON:
    """The `done: true` chunk (or the whole non-streamed answer when `text` is complete)."""
    prompt_tokens, eval_count = counts
    final = native_chunk(kind, model, created_at, text)
    del final["done"]
    final["done"] = True
    final["done_reason"] = done_reason
    if kind == "generate":
        # Real Ollama hands back the tokenised conversation for the next request.
        final["context"] = list(range(prompt_tokens + eval_count))
    return final | metrics(prompt_tokens, eval_count)


def native_load(kind: str, model: str) -> JSON:
    """Ollama's answer to an empty prompt / message list: it only loads the model."""
    answer = native_chunk(kind, model, now_rfc3339(), "")
    answer["done_reason"] = "load"
    answer["done"] = True
    return answer


def native_error(message: str) -> JSON:
    """The native error body, also the in-band error line of a stream."""
    return {"error": message}


def ndjson_line(obj: JSON) -> bytes:
    """One line of an application/x-ndjson stream."""
    return dumps(obj) + b"\n"


# -- OpenAI layer -----------------------------------------------------------

SSE_DONE = b"data: [DONE]\n\n"


def sse_frame(obj: JSON) -> bytes:
    """One `data:` event of an OpenAI stream."""
    return b"data: " + dumps(obj) + b"\n\n"


def usage(prompt_tokens: int, completion: int) -> JSON:
    """OpenAI's `usage` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


def openai_error(status: int, message: str) -> JSON:
    """OpenAI's error body; `type` is derived from the status as Ollama does."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


# Anthropic's error `type` per status, as `anthropic.NewError` maps them.
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def anthropic_error(status: int, message: str) -> JSON:
    """Ollama's `/v1/messages` error body (`anthropic.NewError`)."""
    kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": f"req_{hashlib.sha256(message.encode()).hexdigest()[:24]}",
    }


def _envelope(id_: str, obj: str, created: int, model: str) -> JSON:
    return {
        "id": id_,
        "object": obj,
        "created": created,
        "model": model,
        "system_fingerprint": "fp_ollama",
    }


def chat_chunk(id_: str, created: int, model: str, text: str, finish: str | None) -> JSON:
    """A `chat.completion.chunk`; Ollama repeats the assistant role in every delta."""
    chunk = _envelope(id_, "chat.completion.chunk", created, model)
    delta = {"role": "assistant", "content": text}
    chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return chunk


def chat_usage_chunk(id_: str, created: int, model: str, counts: tuple[int, int]) -> JSON:
    """The `include_usage` chunk: no choices, only usage."""
    chunk = _envelope(id_, "chat.completion.chunk", created, model)
    chunk["choices"] = []
    chunk["usage"] = usage(*counts)
    return chunk


def chat_completion(
    id_: str, created: int, model: str, text: str, finish: str, counts: tuple[int, int]
) -> JSON:
    """A non-streamed `chat.completion`."""
    completion = _envelope(id_, "chat.completion", created, model)
    message = {"role": "assistant", "content": text}
    completion["choices"] = [{"index": 0, "message": message, "finish_reason": finish}]
    completion["usage"] = usage(*counts)
    return completion


def text_completion(
    id_: str, created: int, model: str, text: str, finish: str | None, use: JSON | None
) -> JSON:
    """A `text_completion` object, streamed or not; `use` is omitted when None."""
    completion: JSON = {
        "id": id_,
        "object": "text_completion",
        "created": created,
        "choices": [{"text": text, "index": 0, "finish_reason": finish}],
        "model": model,
        "system_fingerprint": "fp_ollama",
    }
    if use is not None:
        completion["usage"] = use
    return completion


def model_object(name: str) -> JSON:
    """A `/v1/models` entry; `id` is the name as given, `owned_by` its namespace."""
    path = normalise(name).split("/")
    owner = path[-2] if len(path) > 1 else "library"
    created = int(datetime.fromisoformat(MODIFIED_AT[:26] + "+00:00").timestamp())
    return {"id": name, "object": "model", "created": created, "owned_by": owner}


def model_list(names: Sequence[str]) -> JSON:
    """`/v1/models`; Go encodes an empty slice that was never appended to as null."""
    return {"object": "list", "data": [model_object(normalise(n)) for n in names] or None}
