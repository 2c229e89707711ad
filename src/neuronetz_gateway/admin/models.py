"""The model catalog as administrators see it: list, discover now, register by hand.

The `models` table is the catalog's truth (docs/REFERENCE.md §3.2, §4.8); gateways reload it every
discovery interval. Registering by hand is how a catalog is kept while
`MODEL_DISCOVERY_ENABLED=false`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.admin.errors import AdminError
from neuronetz_gateway.catalog.discovery import SyncResult, discover, upstream_label
from neuronetz_gateway.catalog.models import has_tag, is_cloud_model, with_default_tag
from neuronetz_gateway.config import Settings
from neuronetz_gateway.db.tables import Model, ModelUpstream

# Ollama names: `llama3.1:8b`, `user/model:tag`, `hf.co/org/repo:Q4_K_M`.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]{0,254}")


def check_model_name(name: str) -> str:
    """`name` with its default tag (`llama3` → `llama3:latest`), or an AdminError."""
    if _MODEL_NAME.fullmatch(name) is None or "//" in name or name.endswith((":", "/")):
        raise AdminError(
            f"invalid model name {name[:70]!r}: use letters, digits and . _ - + / : "
            "(e.g. llama3.1:8b)"
        )
    canonical = with_default_tag(name)
    if len(canonical) > 255:
        raise AdminError(f"invalid model name {name[:70]!r}: longer than 255 characters")
    return canonical


async def find_model(session: AsyncSession, name: str) -> Model | None:
    """The `models` row `name` refers to: the exact name, else `name:latest` if untagged."""
    model = await session.get(Model, name)
    if model is None and not has_tag(name):
        model = await session.get(Model, with_default_tag(name))
    return model


async def list_models(session: AsyncSession, *, include_unavailable: bool = False) -> list[Model]:
    """The catalog sorted by name: available models, or every model ever seen."""
    query = sa.select(Model).order_by(Model.name)
    if not include_unavailable:
        query = query.where(Model.available.is_(True))
    return list(await session.scalars(query))


@dataclass(frozen=True, slots=True)
class ModelChange:
    model: Model
    changed: bool


def _check_upstream(upstream: str | None, settings: Settings) -> str | None:
    if upstream is None:
        return None
    url = upstream.rstrip("/")
    if url not in settings.upstream_urls:
        configured = ", ".join(upstream_label(u) for u in settings.upstream_urls)
        raise AdminError(
            f"unknown upstream {upstream_label(url)}: not in OLLAMA_BASE_URL(S) ({configured})"
        )
    return url


def _check_cloud(name: str, cloud: bool) -> None:
    if is_cloud_model(name) and not cloud:
        raise AdminError(
            f"{name[:70]!r} is a cloud model: Ollama forwards requests for it to ollama.com "
            "under this server's account; register it with --cloud to allow that"
        )
    if cloud and not is_cloud_model(name):
        raise AdminError(f"{name[:70]!r} is not a cloud model (its tag does not end in cloud)")


async def register_model(
    session: AsyncSession,
    settings: Settings,
    name: str,
    *,
    upstream: str | None = None,
    cloud: bool = False,
) -> ModelChange:
    """Add `name` to the catalog (or make it available again) without asking Ollama.

    `upstream` pins it to one configured server (its only server until discovery
    reports otherwise); without it any upstream may serve it, or the servers discovery
    last saw it on. A cloud model needs `cloud` (docs/REFERENCE.md §11): the approval
    is kept, so discovery leaves it available.
    """
    canonical = check_model_name(name)
    _check_cloud(canonical, cloud)
    pinned = _check_upstream(upstream, settings)
    now = datetime.now(UTC)
    model = await session.get(Model, canonical)
    if model is None:
        model = Model(
            name=canonical,
            available=True,
            cloud_approved=cloud,
            upstream=pinned,
            first_seen_at=now,
            last_seen_at=now,
        )
        session.add(model)
        await session.flush()  # the row model_upstreams refers to
    elif (
        model.available
        and model.cloud_approved == cloud
        and (
            pinned is None
            or (model.upstream == pinned and await _servers(session, canonical) <= {pinned})
        )
    ):
        return ModelChange(model, changed=False)
    else:
        model.available = True
        model.cloud_approved = cloud
        model.last_seen_at = now
        if pinned is not None:
            model.upstream = pinned
    if pinned is not None:
        await session.execute(sa.delete(ModelUpstream).where(ModelUpstream.model_name == canonical))
        session.add(ModelUpstream(model_name=canonical, upstream=pinned, last_seen_at=now))
    await session.commit()
    await session.refresh(model)
    return ModelChange(model, changed=True)


async def _servers(session: AsyncSession, name: str) -> set[str]:
    """The servers `name` is routed to (its `model_upstreams` rows)."""
    rows = await session.scalars(
        sa.select(ModelUpstream.upstream).where(ModelUpstream.model_name == name)
    )
    return set(rows)


async def unregister_model(session: AsyncSession, name: str) -> ModelChange:
    """Mark the model unavailable (a cloud model loses its approval); its row and grants
    stay for when it returns."""
    model = await find_model(session, name)
    if model is None:
        raise AdminError(f"unknown model {name[:70]!r} (see list-models --all)")
    if not model.available and not model.cloud_approved:
        return ModelChange(model, changed=False)
    model.available = False
    model.cloud_approved = False
    await session.commit()
    await session.refresh(model)
    return ModelChange(model, changed=True)


async def discover_models(engine: AsyncEngine, settings: Settings) -> SyncResult:
    """One discovery run against every upstream now, whatever MODEL_DISCOVERY_ENABLED says.

    Unreachable upstreams are listed in the result's `failed_upstreams`; their models
    are left as they were.
    """
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        return await discover(
            engine, session, settings.upstream_urls, settings.model_discovery_timeout_seconds
        )
