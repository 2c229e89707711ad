"""Model listings built by the gateway from its catalog, filtered per key (docs/REFERENCE.md §4.4).

`/api/tags`, `/v1/models` and `/v1/models/{model}` never reach Ollama: they show the
catalog as the key may see it, one entry per model however many servers have it.
`/api/ps` asks every Ollama and removes what the key may not see.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from neuronetz_gateway.catalog.models import CatalogModel


def _created(model: CatalogModel) -> int:
    if model.modified_at:
        try:
            return int(datetime.fromisoformat(model.modified_at).timestamp())
        except ValueError:
            return 0
    return 0


def _owner(name: str) -> str:
    namespace, slash, _ = name.partition("/")
    return namespace if slash else "library"


def tags_body(models: list[CatalogModel]) -> bytes:
    """`/api/tags` in Ollama's shape."""
    return orjson.dumps(
        {
            "models": [
                {
                    "name": m.name,
                    "model": m.name,
                    "modified_at": m.modified_at,
                    "size": m.size_bytes,
                    "digest": m.digest,
                    "details": m.details or {},
                }
                for m in models
            ]
        }
    )


def openai_model(model: CatalogModel) -> dict[str, Any]:
    return {
        "id": model.name,
        "object": "model",
        "created": _created(model),
        "owned_by": _owner(model.name),
    }


def openai_models_body(models: list[CatalogModel]) -> bytes:
    """`/v1/models`: always a list, never `data: null` (Ollama's empty answer)."""
    return orjson.dumps({"object": "list", "data": [openai_model(m) for m in models]})


def merge_ps(answers: Sequence[bytes], visible: set[str]) -> bytes:
    """The servers' `/api/ps` answers as one, without the models the key may not see.

    A model loaded on several servers is listed once (the first server's entry).
    Raises `ValueError` when not one answer is a JSON object.
    """
    kept: dict[str, dict[str, Any]] = {}
    parsed = 0
    for content in answers:
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        parsed += 1
        for entry in data.get("models") or ():
            if not isinstance(entry, dict):
                continue
            name, model = entry.get("name"), entry.get("model")
            if name in visible or model in visible:
                kept.setdefault(str(name or model), entry)
    if not parsed:
        raise ValueError("no /api/ps answer could be read")
    return orjson.dumps({"models": list(kept.values())})
