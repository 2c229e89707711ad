"""The in-memory catalog of available models (docs/REFERENCE.md §4.8), one per process.

The hot path asks it "is model M available, and what is its canonical name?" without
any I/O; a background task (`catalog.discovery.DiscoveryTask`) refreshes it from
Postgres, where discovery and the CLI write the `models` table.

Names: Ollama's `name` (always with a tag, e.g. `llama3.1:8b`, `llama3:latest`) is the
key. A requested name without a tag means `:latest`, as it does for Ollama, so `get()`
tries the exact name first and then `name + ":latest"`. Matching is case-sensitive and
no registry-host or `library/` aliases are resolved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.db.tables import Model, ModelUpstream

DEFAULT_TAG = "latest"


def has_tag(name: str) -> bool:
    """Whether `name` names a tag; a ':' before the last '/' is a registry port."""
    return ":" in name.rpartition("/")[2]


def with_default_tag(name: str) -> str:
    """`name` with `:latest` appended when it has no tag (how Ollama reads it)."""
    return name if has_tag(name) else f"{name}:{DEFAULT_TAG}"


def is_cloud_model(name: str) -> bool:
    """Whether Ollama forwards requests for `name` to ollama.com (docs/REFERENCE.md §11).

    As Ollama decides it: the text after the last ':' is `cloud` (in any case), or a
    tag ending in `-cloud` (`gpt-oss:120b-cloud`), after trimming whitespace.
    """
    _, colon, tag = name.strip().rpartition(":")
    tag = tag.strip().lower()
    return bool(colon) and (tag == "cloud" or ("/" not in tag and tag.endswith("-cloud")))


def without_default_tag(name: str) -> str:
    """`llama3:latest` → `llama3`; other names unchanged."""
    return name.removesuffix(f":{DEFAULT_TAG}")


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """One available model, as the gateway lists and routes it."""

    name: str
    digest: str | None = None
    size_bytes: int | None = None
    details: dict[str, Any] | None = None
    # As Ollama reported it (nanosecond precision), for /api/tags passthrough.
    modified_at: str | None = None
    # The base URL of the Ollama server that has it; None for a model an admin
    # registered without naming a server (any upstream may serve it).
    upstream: str | None = None
    # Base URLs of every server that has it, where requests for it may go; empty: any
    # server may serve it (docs/UPSTREAMS.md).
    upstreams: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Snapshot:
    by_name: dict[str, CatalogModel]
    names: frozenset[str]
    ordered: tuple[CatalogModel, ...]


def _snapshot(models: Iterable[CatalogModel]) -> _Snapshot:
    by_name = {model.name: model for model in models}
    ordered = tuple(sorted(by_name.values(), key=lambda model: model.name))
    return _Snapshot(by_name=by_name, names=frozenset(by_name), ordered=ordered)


class Catalog:
    """The models this process may route to. Reads are O(1) and never do I/O.

    The whole content is swapped as one immutable snapshot, so a reader never sees a
    half-replaced catalog.
    """

    __slots__ = ("_snapshot",)

    def __init__(self, models: Iterable[CatalogModel] = ()) -> None:
        self._snapshot = _snapshot(models)

    def get(self, name: str) -> CatalogModel | None:
        """The model `name` refers to: the exact name, else `name:latest` if untagged."""
        by_name = self._snapshot.by_name
        model = by_name.get(name)
        if model is None and not has_tag(name):
            model = by_name.get(f"{name}:{DEFAULT_TAG}")
        return model

    def names(self) -> frozenset[str]:
        """The canonical names of every available model."""
        return self._snapshot.names

    def models(self) -> tuple[CatalogModel, ...]:
        """Every available model, sorted by name."""
        return self._snapshot.ordered

    def __len__(self) -> int:
        return len(self._snapshot.ordered)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def replace(self, models: Iterable[CatalogModel]) -> None:
        """Make `models` the whole catalog, atomically."""
        self._snapshot = _snapshot(models)

    async def reload(self, engine: AsyncEngine) -> None:
        """Replace the catalog with the `models` rows marked available in Postgres (cloud
        models only when approved).

        A model's servers are its `model_upstreams` rows, else its `upstream` (one
        pinned by an admin), else none: any server.
        """
        async with engine.connect() as connection:
            holders: dict[str, set[str]] = {}
            for name, upstream in await connection.execute(
                sa.select(ModelUpstream.model_name, ModelUpstream.upstream)
            ):
                holders.setdefault(name, set()).add(upstream)
            result = await connection.execute(
                sa.select(
                    Model.name,
                    Model.digest,
                    Model.size_bytes,
                    Model.details,
                    Model.modified_at,
                    Model.upstream,
                    Model.cloud_approved,
                ).where(Model.available.is_(True))
            )
            # A cloud model only with the operator's approval, whatever `available` says
            # (a replica of an older version may still be writing it).
            rows = [r for r in result if r.cloud_approved or not is_cloud_model(r.name)]
            self.replace(
                CatalogModel(
                    name=row.name,
                    digest=row.digest,
                    size_bytes=row.size_bytes,
                    details=row.details,
                    modified_at=row.modified_at,
                    upstream=row.upstream,
                    upstreams=frozenset(
                        holders.get(row.name) or ([row.upstream] if row.upstream else ())
                    ),
                )
                for row in rows
            )
