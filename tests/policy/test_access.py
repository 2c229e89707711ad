"""docs/REFERENCE.md §4.4 model access, rule by rule, on an in-memory catalog."""

from __future__ import annotations

import uuid

import pytest

from neuronetz_gateway.auth.principal import Principal
from neuronetz_gateway.catalog.models import Catalog, CatalogModel
from neuronetz_gateway.policy.access import may_use, resolve_allowed, visible_models

CATALOG = Catalog(
    [CatalogModel(name="mistral:7b"), CatalogModel(name="llama3:latest"), CatalogModel("qwen:1b")]
)
ALL = ("llama3:latest", "mistral:7b", "qwen:1b")


def principal(
    *,
    tenant_all: bool = False,
    tenant_grants: tuple[str, ...] = (),
    key_all: bool | None = None,
    key_grants: tuple[str, ...] = (),
) -> Principal:
    return Principal(
        tenant_id=uuid.uuid4(),
        tenant_name="acme",
        key_id=uuid.uuid4(),
        key_prefix="nz_abcdefgh",
        tenant_allow_all_models=tenant_all,
        tenant_grants=frozenset(tenant_grants),
        key_allow_all_models=key_all,
        key_grants=frozenset(key_grants),
    )


# (principal, models it may use among ALL)
CASES = {
    "tenant without allow_all or grants: nothing": (principal(), ()),
    "tenant allow_all, key inherits: everything": (principal(tenant_all=True), ALL),
    "tenant grant, key inherits: the granted model": (
        principal(tenant_grants=("mistral:7b",)),
        ("mistral:7b",),
    ),
    "tenant grant of an unavailable model grants nothing": (
        principal(tenant_grants=("gone:1b",)),
        (),
    ),
    "key allow_all true never exceeds the tenant": (
        principal(tenant_grants=("qwen:1b",), key_all=True),
        ("qwen:1b",),
    ),
    "key allow_all true under tenant allow_all: everything": (
        principal(tenant_all=True, key_all=True),
        ALL,
    ),
    "key allow_all false, no key grants: nothing": (
        principal(tenant_all=True, key_all=False),
        (),
    ),
    "key allow_all false with a key grant: that model": (
        principal(tenant_all=True, key_all=False, key_grants=("qwen:1b",)),
        ("qwen:1b",),
    ),
    "key allow_all null with key grants no longer inherits": (
        principal(tenant_all=True, key_grants=("mistral:7b",)),
        ("mistral:7b",),
    ),
    "key grant outside the tenant's models has no effect": (
        principal(tenant_grants=("qwen:1b",), key_grants=("mistral:7b",)),
        (),
    ),
    "key grants intersect the tenant's grants": (
        principal(tenant_grants=("qwen:1b", "mistral:7b"), key_grants=("mistral:7b", "x:1")),
        ("mistral:7b",),
    ),
    "untagged grants match the :latest model": (
        principal(tenant_grants=("llama3",), key_grants=("llama3",)),
        ("llama3:latest",),
    ),
}


@pytest.mark.parametrize(("subject", "allowed"), CASES.values(), ids=CASES.keys())
def test_may_use_follows_spec_4_4(subject: Principal, allowed: tuple[str, ...]) -> None:
    assert {m for m in ALL if may_use(subject, m, CATALOG)} == set(allowed)
    assert [m.name for m in visible_models(subject, CATALOG)] == sorted(allowed)


@pytest.mark.parametrize("model", ["unknown:1b", "gone:1b", "", "mistral", "MISTRAL:7b"])
def test_models_not_in_the_catalog_are_never_usable(model: str) -> None:
    everything = principal(tenant_all=True, key_all=True, tenant_grants=(model,))
    assert may_use(everything, model, CATALOG) is False
    assert resolve_allowed(everything, model, CATALOG) is None


def test_a_request_without_tag_means_latest() -> None:
    subject = principal(tenant_grants=("llama3:latest",))
    assert may_use(subject, "llama3", CATALOG) is True
    entry = resolve_allowed(subject, "llama3", CATALOG)
    assert entry is not None
    assert entry.name == "llama3:latest"
    # A tagged request means exactly that tag.
    assert may_use(subject, "llama3:8b", CATALOG) is False


def test_a_model_leaving_the_catalog_is_refused_at_once() -> None:
    catalog = Catalog(CATALOG.models())
    subject = principal(tenant_all=True)
    assert may_use(subject, "qwen:1b", catalog)
    catalog.replace(m for m in CATALOG.models() if m.name != "qwen:1b")
    assert not may_use(subject, "qwen:1b", catalog)
    assert [m.name for m in visible_models(subject, catalog)] == ["llama3:latest", "mistral:7b"]
