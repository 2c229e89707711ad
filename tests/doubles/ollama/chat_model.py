"""The model behind Ollama's translating layers: a chat request in, `api.ChatResponse`s out.

Ollama serves `/v1/messages` and `/v1/responses` by converting the request to an
`api.ChatRequest`, running its chat handler, and converting each `api.ChatResponse`
it writes back (`middleware/anthropic.go`, `middleware/openai.go`). The double does
the same: a surface module converts its request to a `Turn`, `answer` produces the
chunks the chat handler would write, and the surface's converter renders them.

Deterministic, like the rest of the double:

- The answer is `plan_answer`'s tokens (`completion_tokens`, cut to the cap).
- A model of a thinking family (`THINKING_FAMILIES`) thinks unless the request turned
  thinking off (as Ollama enables it by default for such models): its first
  `THINKING_TOKENS` tokens are thinking, the rest text.
- The model calls a tool only when the client forces one (`tool_choice` naming a tool,
  or requiring any): then the text is replaced by one call of that tool, whose
  arguments give each required parameter a token (`{"path": "tok0"}`). Ollama itself
  ignores `tool_choice`; here it stands in for "the model decided to call a tool".
- Prompt tokens are counted on the converted messages (`count_prompt_tokens`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import wire
from .routes import Call, plan_answer

THINKING_FAMILIES = ("qwen3", "deepseek-r1", "gpt-oss", "magistral")
THINKING_TOKENS = 2

JSON = dict[str, Any]


def thinks_by_default(model: str) -> bool:
    """Whether Ollama reports the `thinking` capability for the model."""
    base = model.rsplit("/", 1)[-1].lower()
    return base.startswith(THINKING_FAMILIES)


@dataclass(frozen=True)
class Tool:
    """A function the request offers the model."""

    name: str
    required: tuple[str, ...] = ()


@dataclass
class Turn:
    """A converted request: Ollama's `api.ChatRequest`, as far as the double needs it."""

    model: str
    messages: list[JSON] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    think: bool | None = None  # None: the model's default
    forced_tool: str | None = None
    cap: Any = None  # options.num_predict

    def prompt_tokens(self) -> int:
        return wire.count_prompt_tokens({"messages": self.messages})


def required_parameters(schema: Any) -> tuple[str, ...]:
    """The `required` names of a JSON schema, when it lists any."""
    if not isinstance(schema, Mapping):
        return ()
    required = schema.get("required")
    if not isinstance(required, list):
        return ()
    return tuple(name for name in required if isinstance(name, str))


@dataclass(frozen=True)
class Answer:
    """What the chat handler writes: `chunks` while generating, then `final` (done)."""

    chunks: tuple[JSON, ...]
    final: JSON
    whole: JSON  # the non-streamed answer: every chunk merged into the final one

    @property
    def counts(self) -> tuple[int, int]:
        return self.final["prompt_eval_count"], self.final["eval_count"]


def _chunk(model: str, created: str, message: JSON) -> JSON:
    return {"model": model, "created_at": created, "message": message, "done": False}


def _message(content: str = "", thinking: str = "", tool_calls: Sequence[JSON] = ()) -> JSON:
    message: JSON = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return message


def _tool_call(tool: Tool, call_id: int) -> JSON:
    arguments = {name: f"tok{i}" for i, name in enumerate(tool.required)}
    return {
        "id": f"call_{call_id}",
        "function": {"index": 0, "name": tool.name, "arguments": arguments},
    }


def answer(turn: Turn, call: Call) -> Answer:
    """The chunks Ollama's chat handler writes for `turn`, and the merged answer."""
    plan = plan_answer(turn.model, call, turn.cap)
    thinking = turn.think is not False and thinks_by_default(turn.model)
    split = min(THINKING_TOKENS, len(plan.tokens)) if thinking else 0
    created = wire.now_rfc3339()
    thought, spoken = plan.tokens[:split], plan.tokens[split:]
    chunks = [_chunk(turn.model, created, _message(thinking=t)) for t in thought]
    tool = next((t for t in turn.tools if t.name == turn.forced_tool), None)
    calls: list[JSON] = []
    if tool is not None:
        calls = [_tool_call(tool, call.next_id())]
        chunks.append(_chunk(turn.model, created, _message(tool_calls=calls)))
    else:
        chunks += [_chunk(turn.model, created, _message(content=t)) for t in spoken]
    timing = wire.metrics(turn.prompt_tokens(), len(plan.tokens))
    final = _chunk(turn.model, created, _message()) | timing
    final["done"], final["done_reason"] = True, plan.done_reason
    text = "" if tool is not None else "".join(spoken)
    whole = final | {"message": _message(text, "".join(thought), calls)}
    return Answer(tuple(chunks), final, whole)
