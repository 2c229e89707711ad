"""Hypothesis strategies for request bodies that probe how keys are read.

Bodies are rendered by hand, so they can hold what no JSON encoder writes: keys spelled
in any case, with characters Go folds to ASCII (U+212A KELVIN SIGN for k, U+017F LONG S
for s) and look-alikes it does not fold (U+0130, U+0131, the ligature U+FB06), any
character as a `\\u` escape, repeated keys (exactly or in another spelling) at the top
level and inside objects, nulls and, rarely, values of the wrong type. `Body.repeats`
says whether some object holds two keys equal under `str.casefold`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

MODELS = ("llama3.1:8b", "qwen2.5:0.5b")
Draw = Callable[[st.SearchStrategy[Any]], Any]

_GO_FOLDS = {"k": ("K", "\u212a"), "s": ("S", "\u017f")}
_NOT_GO_FOLDS = {"i": ("I", "\u0130", "\u0131")}


@dataclass
class Obj:
    """A JSON object as sent: its pairs in order, keys possibly repeated."""

    pairs: list[tuple[str, Any]]


@dataclass(frozen=True)
class Body:
    """A generated body: its bytes and whether it repeats a key in some object."""

    raw: bytes
    repeats: bool


# -- rendering -------------------------------------------------------------------------

_DIGIT = st.integers(0, 9)
_BITS = st.integers(0, 2**16 - 1)
_PICK = st.integers(0, 2**32 - 1)
_COIN = st.booleans()


def _escape(char: str, hex_upper: bool) -> str:
    units = char.encode("utf-16-be")  # beyond U+FFFF: a surrogate pair
    codes = [units[i : i + 2].hex() for i in range(0, len(units), 2)]
    return "".join("\\u" + (code.upper() if hex_upper else code) for code in codes)


def json_string(draw: Draw, text: str) -> str:
    """`text` as a JSON string, some characters written as `\\u` escapes."""
    escapes = 0 if draw(_DIGIT) < 6 else draw(_BITS)
    hex_upper = bool(escapes & 1)
    out = ['"']
    for index, char in enumerate(text):
        if char in '"\\' or ord(char) < 0x20 or escapes >> (index % 16) & 1:
            out.append(_escape(char, hex_upper))
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def render(draw: Draw, value: Any) -> str:
    """JSON text for `value` (Obj, list, str, bool, None, int, float or a Literal)."""
    if isinstance(value, Obj):
        parts = [f"{json_string(draw, key)}:{render(draw, item)}" for key, item in value.pairs]
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(draw, item) for item in value) + "]"
    if isinstance(value, Literal):
        return value.text
    if isinstance(value, str):
        return json_string(draw, value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Literal:
    """A number written exactly as given (`5.0`, `1e2`)."""

    text: str


def repeats(value: Any) -> bool:
    """Whether some object in `value` has two keys equal under `str.casefold`."""
    if isinstance(value, Obj):
        folded = [key.casefold() for key, _ in value.pairs]
        return len(set(folded)) != len(folded) or any(repeats(v) for _, v in value.pairs)
    if isinstance(value, list):
        return any(repeats(item) for item in value)
    return False


# -- keys ------------------------------------------------------------------------------


def _variants(char: str) -> tuple[str, ...]:
    variants = (char, *_GO_FOLDS.get(char, ()), *_NOT_GO_FOLDS.get(char, ()))
    return variants if len(variants) > 1 or not char.isalpha() else (char, char.upper())


def spelling(draw: Draw, name: str) -> str:
    """`name` as a client may spell it: mostly as is, else any case and fold."""
    if draw(_DIGIT) < 5:
        return name
    pick = draw(_PICK)
    chars = []
    for char in name:
        variants = _variants(char)
        pick, index = divmod(pick, len(variants))
        chars.append(variants[index])
    spelled = "".join(chars)
    if "st" in spelled and draw(_DIGIT) == 0:
        spelled = spelled.replace("st", "\ufb06", 1)  # casefolds to "st"; Go keeps it
    return spelled


# -- values ----------------------------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_WRONG = st.sampled_from(["yes", 7, [1], Obj([("a", 1)])])


def _sometimes_wrong(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(values, values, values, values, values, values, values, values, _WRONG)


_MODEL = st.one_of(st.sampled_from(MODELS), st.sampled_from(MODELS), st.sampled_from(["", " "]))
_FLAG = st.one_of(st.booleans(), st.booleans(), st.none())
_CAP = st.one_of(
    st.integers(-3, 600),
    st.none(),
    st.sampled_from([Literal("5.0"), Literal("1e2"), 2**63, 2**64]),
)
_NUM_PREDICT = st.one_of(
    st.integers(-3, 600),
    st.sampled_from([None, Literal("5.5"), Literal("100.0"), Literal("1e3"), 2**60]),
)
_OPTION_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "num_predict": _NUM_PREDICT,
    "num_ctx": st.integers(0, 200_000),
    "num_gpu": st.integers(-1, 99),
    "main_gpu": st.integers(0, 3),
    "num_batch": st.integers(1, 2048),
    "num_thread": st.integers(0, 64),
    "use_mmap": st.booleans(),
    "use_mlock": st.booleans(),
    "numa": st.booleans(),
    "low_vram": st.booleans(),
    "vocab_only": st.booleans(),
    "draft_num_predict": st.integers(0, 8),
    "temperature": st.floats(0, 2, allow_nan=False),
    "top_k": st.integers(1, 100),
    "seed": st.integers(-1, 2**31),
    "stop": st.lists(_TEXT, max_size=2),
}
_TOOL_TYPES = st.sampled_from(
    ["function", "function", "web_search", "web_fetch", "web_search_20250305", "WEB_SEARCH"]
)
_UNKNOWN_KEYS = st.sampled_from(["foo", "Modelx", "opts", "\u0131nput"])


def obj(
    fields: dict[str, st.SearchStrategy[Any]], *, exact_keys: bool = False
) -> st.SearchStrategy[Obj]:
    """Objects with some of `fields`, keys spelled freely (half of them exactly, with
    `exact_keys`, since Go compares map keys exactly), sometimes a key twice, sometimes
    an unknown key."""
    names = sorted(fields)
    positions = st.integers(0, len(names))

    @st.composite
    def build(draw: st.DrawFn) -> Obj:
        included, exact = draw(_BITS), draw(_BITS) if exact_keys else 0
        chosen = [name for index, name in enumerate(names) if included >> index & 1]
        pairs = []
        for index, name in enumerate(chosen):
            key = name if exact >> index & 1 else spelling(draw, name)
            pairs.append((key, draw(fields[name])))
        if chosen and draw(_DIGIT) < 2:  # a repeat, in the same or another spelling
            name = chosen[draw(_PICK) % len(chosen)]
            pairs.insert(
                min(draw(positions), len(pairs)), (spelling(draw, name), draw(fields[name]))
            )
        if draw(_DIGIT) == 0:
            pairs.append((draw(_UNKNOWN_KEYS), 1))
        return Obj(pairs)

    return build()


_OPTIONS = st.one_of(obj(_OPTION_VALUES, exact_keys=True), st.none())
_TOOLS = st.lists(
    obj({"type": _TOOL_TYPES, "name": st.just("f"), "function": st.just(Obj([]))}), max_size=3
)
_MESSAGES = st.lists(obj({"role": st.just("user"), "content": _TEXT}), min_size=1, max_size=2)
_DEEP = st.integers(60, 70).map(lambda n: Literal("[" * n + "]" * n))
_NATIVE_RUNTIME: dict[str, st.SearchStrategy[Any]] = {
    "keep_alive": st.one_of(st.sampled_from([0, -1, "5m", "0s"]), st.none()),
    "_debug_render_only": st.booleans(),
}
_OPENAI_STREAM: dict[str, st.SearchStrategy[Any]] = {
    "stream": _sometimes_wrong(_FLAG),
    "stream_options": st.one_of(obj({"include_usage": _FLAG}), st.none()),
    "max_tokens": _CAP,
    "max_completion_tokens": _CAP,
    "_debug_render_only": st.booleans(),
}

# The fields generated for each route: Ollama's, and some it does not know.
FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "/api/generate": {
        "model": _MODEL,
        "prompt": _TEXT,
        "system": _TEXT,
        "stream": _sometimes_wrong(_FLAG),
        "options": _OPTIONS,
        **_NATIVE_RUNTIME,
    },
    "/api/chat": {
        "model": _MODEL,
        "messages": _MESSAGES,
        "stream": _sometimes_wrong(_FLAG),
        "options": _OPTIONS,
        "tools": _TOOLS,
        **_NATIVE_RUNTIME,
    },
    "/api/embed": {
        "model": _MODEL,
        "input": st.one_of(_TEXT, st.lists(_TEXT, max_size=2)),
        "options": _OPTIONS,
        "keep_alive": _NATIVE_RUNTIME["keep_alive"],
    },
    "/api/embeddings": {
        "model": _MODEL,
        "prompt": _TEXT,
        "options": _OPTIONS,
        "keep_alive": _NATIVE_RUNTIME["keep_alive"],
    },
    "/api/show": {"model": _MODEL, "name": _MODEL, "verbose": st.booleans()},
    "/v1/chat/completions": {
        "model": _MODEL,
        "messages": _MESSAGES,
        "tools": _TOOLS,
        **_OPENAI_STREAM,
    },
    "/v1/completions": {"model": _MODEL, "prompt": _TEXT, **_OPENAI_STREAM},
    "/v1/embeddings": {"model": _MODEL, "input": _TEXT},
    "/v1/messages": {
        "model": _MODEL,
        "max_tokens": _CAP,
        "messages": _MESSAGES,
        "stream": _FLAG,
        "tools": _TOOLS,
    },
    "/v1/responses": {
        "model": _MODEL,
        "input": _TEXT,
        "max_output_tokens": _CAP,
        "stream": _FLAG,
        "tools": _TOOLS,
    },
}
_TOP = {path: obj(fields) for path, fields in FIELDS.items()}
_DEEPER = st.integers(0, 30)


@st.composite
def body(draw: st.DrawFn, path: str) -> Body:
    """A body for `path` (see the module docstring)."""
    top = draw(_TOP[path])
    if not any(key.casefold() == "model" for key, _ in top.pairs):
        top.pairs.insert(0, ("model", draw(_MODEL)))
    if draw(_DEEPER) == 0:
        top.pairs.append(("extra", draw(_DEEP)))
    return Body(render(draw, top).encode("utf-8"), repeats(top))
