"""Model access (docs/REFERENCE.md §4.4): which catalog models a principal may use.

A tenant may use M if M is in the catalog and the tenant has `allow_all_models` or a
tenant-wide grant for M. A key may use M if its tenant may, and the key either
inherits (`allow_all_models` null and no key-level grants), has `allow_all_models =
true`, or has a key-level grant for M. A key never exceeds its tenant.

Grants name models by their catalog name (`llama3:latest`); a grant stored without a
tag (`llama3`, e.g. written by the console) matches the `:latest` model as Ollama
would. Pure functions of in-memory data: no I/O, safe on the hot path.
"""

from __future__ import annotations

from neuronetz_gateway.auth.principal import Principal
from neuronetz_gateway.catalog.models import Catalog, CatalogModel, without_default_tag


def _granted(grants: frozenset[str], name: str) -> bool:
    return name in grants or (bool(grants) and without_default_tag(name) in grants)


def _tenant_may(principal: Principal, name: str) -> bool:
    return principal.tenant_allow_all_models or _granted(principal.tenant_grants, name)


def _key_may(principal: Principal, name: str) -> bool:
    allow_all = principal.key_allow_all_models
    if allow_all is True:
        return True
    if allow_all is None and not principal.key_grants:
        return True  # inherits the tenant's models
    return _granted(principal.key_grants, name)


def _allowed(principal: Principal, name: str) -> bool:
    return _tenant_may(principal, name) and _key_may(principal, name)


def may_use(principal: Principal, model: str, catalog: Catalog) -> bool:
    """Whether the key may use `model` (as requested; an untagged name means `:latest`).

    False for a model that is unknown, unavailable, or not allowed alike: callers
    answer all three with the same 404 so tenants cannot probe each other's models.
    """
    entry = catalog.get(model)
    return entry is not None and _allowed(principal, entry.name)


def resolve_allowed(principal: Principal, model: str, catalog: Catalog) -> CatalogModel | None:
    """The catalog entry for `model` if the key may use it, else None (same as 404)."""
    entry = catalog.get(model)
    if entry is None or not _allowed(principal, entry.name):
        return None
    return entry


def visible_models(principal: Principal, catalog: Catalog) -> list[CatalogModel]:
    """The models the key may use, sorted by name (for /api/tags, /v1/models, /api/ps)."""
    models = catalog.models()
    if principal.tenant_allow_all_models and (
        principal.key_allow_all_models is True
        or (principal.key_allow_all_models is None and not principal.key_grants)
    ):
        return list(models)
    return [model for model in models if _allowed(principal, model.name)]
