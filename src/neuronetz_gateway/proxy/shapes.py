"""The body of each route that carries one: the fields Ollama reads from it that matter
to the gateway (docs/REFERENCE.md §4.6, §4.7, §11).

Each shape follows the Go struct Ollama decodes that route's body into
(`api.GenerateRequest`, `api.ChatRequest`, `api.EmbedRequest`, `api.EmbeddingRequest`,
`api.ShowRequest`, `openai.ChatCompletionRequest`, `openai.CompletionRequest`,
`openai.EmbedRequest`, `anthropic.MessagesRequest`, `openai.ResponsesRequest`). Field
names are the structs' json tags; the gateway finds them the way Go does
(`gofields`). A route with a body is served once its shape is in `SHAPES`, keyed by the
route's path.
"""

from __future__ import annotations

from dataclasses import dataclass

# Options that make Ollama load the model again, for every tenant (the `Runner` struct
# of api/types.go, plus options older Ollama versions had there).
RUNNER_OPTIONS = frozenset(
    {
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "use_mmap",
        "use_mlock",
        "num_thread",
        "numa",
        "low_vram",
        "vocab_only",
        "draft_num_predict",
    }
)


@dataclass(frozen=True, slots=True)
class OutputCap:
    """Where a route's output cap lives.

    `field` is a top-level field; with `option` it is a map and the cap is that key of
    it (`options.num_predict`). `aliases` are other fields clients cap with that Ollama
    ignores (`max_completion_tokens`); the gateway moves their value to `field`.
    """

    field: str
    option: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BodyShape:
    """What the gateway reads from, and may change in, one route's body."""

    # Fields naming the model; the first one set wins (/api/show's legacy `name`).
    model: tuple[str, ...] = ("model",)
    # The streaming flag; None when the route never streams.
    stream: str | None = "stream"
    output_cap: OutputCap | None = None
    # Fields holding prompt text (strings, or lists/objects with `text`/`content`).
    text: tuple[str, ...] = ()
    # The list of tool entries (whose text counts too, and whose `web_` ones go).
    tools: str | None = None
    # Top-level fields that change the server's state for everyone: removed.
    runtime: tuple[str, ...] = ()
    # The model options map, whose RUNNER_OPTIONS are removed.
    options: str | None = None
    # Streams carry usage only when `stream_options.include_usage` asks for it.
    usage_option: bool = False


_NATIVE_CAP = OutputCap("options", option="num_predict")
_NATIVE_RUNTIME = ("keep_alive", "_debug_render_only")

SHAPES: dict[str, BodyShape] = {
    "/api/generate": BodyShape(
        output_cap=_NATIVE_CAP,
        text=("prompt", "system", "suffix", "template"),
        runtime=_NATIVE_RUNTIME,
        options="options",
    ),
    "/api/chat": BodyShape(
        output_cap=_NATIVE_CAP,
        text=("messages",),
        tools="tools",
        runtime=_NATIVE_RUNTIME,
        options="options",
    ),
    "/api/embed": BodyShape(
        stream=None, text=("input",), runtime=("keep_alive",), options="options"
    ),
    "/api/embeddings": BodyShape(
        stream=None, text=("prompt",), runtime=("keep_alive",), options="options"
    ),
    "/api/show": BodyShape(model=("model", "name"), stream=None),
    "/v1/chat/completions": BodyShape(
        output_cap=OutputCap("max_tokens", aliases=("max_completion_tokens",)),
        text=("messages",),
        tools="tools",
        runtime=("_debug_render_only",),
        usage_option=True,
    ),
    "/v1/completions": BodyShape(
        output_cap=OutputCap("max_tokens", aliases=("max_completion_tokens",)),
        text=("prompt", "suffix"),
        runtime=("_debug_render_only",),
        usage_option=True,
    ),
    "/v1/embeddings": BodyShape(stream=None, text=("input",)),
    # The Anthropic Messages and OpenAI Responses surfaces (docs/REFERENCE.md §12).
    "/v1/messages": BodyShape(
        output_cap=OutputCap("max_tokens"), text=("system", "messages"), tools="tools"
    ),
    "/v1/responses": BodyShape(
        output_cap=OutputCap("max_output_tokens"),
        text=("instructions", "input"),
        tools="tools",
    ),
    # Answered by the gateway from the prompt estimate; nothing is forwarded.
    "/v1/messages/count_tokens": BodyShape(stream=None, text=("system", "messages"), tools="tools"),
}


def shape_of(route_name: str) -> BodyShape:
    """The body shape of the route `route_name` (its path)."""
    return SHAPES[route_name]
