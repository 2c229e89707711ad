"""Model listings built by the gateway from its catalog, filtered per key (SPEC §4.4).

`/api/tags`, `/v1/models` and `/v1/models/{model}` never reach Ollama: they show the
catalog as the key may see it. `/api/ps` asks Ollama and removes what the key may not
see.
"""

from __future__ import annotations

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


def filter_ps(content: bytes, visible: set[str]) -> bytes:
    """Ollama's `/api/ps` answer without the models the key may not see."""
    data = orjson.loads(content)
    models = data.get("models") if isinstance(data, dict) else None
    kept = [
        m
        for m in models or ()
        if isinstance(m, dict) and (m.get("name") in visible or m.get("model") in visible)
    ]
    return orjson.dumps({"models": kept})
