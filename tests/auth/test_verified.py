"""The verified-key cache (auth/verified.py), on a clock the test moves."""

from __future__ import annotations

import uuid

from neuronetz_gateway.auth.principal import Principal
from neuronetz_gateway.auth.verified import VerifiedKey, VerifiedKeys

PREFIX = "nz_abcdefgh"
DIGEST = b"d" * 32
OTHER_DIGEST = b"e" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(
    cache: VerifiedKeys, *, tenant_id: uuid.UUID | None = None, key_id: uuid.UUID | None = None
) -> VerifiedKey:
    tenant_id = tenant_id or uuid.uuid4()
    key_id = key_id or uuid.uuid4()
    principal = Principal(tenant_id=tenant_id, tenant_name="t", key_id=key_id, key_prefix=PREFIX)
    return VerifiedKey(
        digest=DIGEST,
        tenant_id=tenant_id,
        key_id=key_id,
        principal=principal,
        expires_at=None,
        fresh_until=cache.fresh_until(),
    )


def test_an_entry_is_found_only_with_its_digest_and_while_fresh() -> None:
    clock = Clock()
    cache = VerifiedKeys(60.0, clock=clock)
    cached = entry(cache)
    assert cache.put(PREFIX, cached, cache.generation)
    assert cache.get(PREFIX, DIGEST) is cached
    assert cache.get(PREFIX, OTHER_DIGEST) is None
    assert cache.get("nz_otherpfx", DIGEST) is None
    clock.now += 59.9
    assert cache.get(PREFIX, DIGEST) is cached
    clock.now += 0.2
    assert cache.get(PREFIX, DIGEST) is None


def test_an_eviction_during_a_verification_keeps_its_result_out() -> None:
    """The generation guard: what was loaded before a revocation is not cached."""
    cache = VerifiedKeys(60.0)
    seen = cache.generation  # a verification starts and loads the key...
    cache.evict_prefix(PREFIX)  # ...the key is revoked meanwhile...
    assert not cache.put(PREFIX, entry(cache), seen)  # ...its result is not kept
    assert cache.get(PREFIX, DIGEST) is None
    assert cache.put(PREFIX, entry(cache), cache.generation)  # a fresh load is


def test_every_kind_of_eviction_moves_the_generation() -> None:
    cache = VerifiedKeys(60.0)
    generations = [cache.generation]
    cache.evict_prefix(PREFIX)
    generations.append(cache.generation)
    cache.evict(uuid.uuid4(), None)
    generations.append(cache.generation)
    cache.clear()
    generations.append(cache.generation)
    assert len(set(generations)) == 4


def test_evict_forgets_the_named_tenant_or_key_only() -> None:
    cache = VerifiedKeys(60.0)
    tenant, key = uuid.uuid4(), uuid.uuid4()
    cache.put("nz_tenant01", entry(cache, tenant_id=tenant), cache.generation)
    cache.put("nz_key00001", entry(cache, key_id=key), cache.generation)
    cache.put("nz_bystandr", entry(cache), cache.generation)
    cache.evict(tenant, None)
    assert cache.get("nz_tenant01", DIGEST) is None
    assert cache.get("nz_key00001", DIGEST) is not None
    cache.evict(None, key)
    assert cache.get("nz_key00001", DIGEST) is None
    assert cache.get("nz_bystandr", DIGEST) is not None
    assert len(cache) == 1


def test_proofs_outlive_evictions_and_name_their_hash() -> None:
    cache = VerifiedKeys(60.0)
    cache.put(PREFIX, entry(cache), cache.generation)
    cache.remember_proof(PREFIX, DIGEST, "$argon2id$one")
    cache.clear()
    cache.evict_prefix(PREFIX)
    assert cache.get(PREFIX, DIGEST) is None
    assert cache.proven(PREFIX, DIGEST)
    assert cache.proven(PREFIX, DIGEST, "$argon2id$one")
    assert not cache.proven(PREFIX, DIGEST, "$argon2id$rehashed")
    assert not cache.proven(PREFIX, OTHER_DIGEST)
    assert not cache.proven("nz_otherpfx", DIGEST)
