"""Key format (docs/REFERENCE.md §4.3): shape, checksum, entropy-bearing parts, Argon2id hashing."""

from __future__ import annotations

import math

import pytest

from neuronetz_gateway.auth import keys
from neuronetz_gateway.auth.keys import KeyHasher


def test_generated_key_has_the_documented_shape() -> None:
    generated = keys.generate_key()
    assert len(generated.secret) == keys.KEY_LENGTH == 49
    assert generated.secret.startswith("nz_")
    assert generated.prefix == generated.secret[:11]
    assert keys.is_display_prefix(generated.prefix)
    assert keys.is_well_formed(generated.secret)
    assert keys.display_prefix(generated.secret) == generated.prefix


def test_keys_are_unique_and_carry_enough_entropy() -> None:
    secrets = {keys.generate_key().secret for _ in range(2000)}
    assert len(secrets) == 2000
    secret_bits = keys.SECRET_CHARS * math.log2(62)
    assert secret_bits >= 190


def test_checksum_is_crc32_in_base62() -> None:
    # crc32(b"nz_") == 0x6E6A2E5E... computed independently via zlib
    import zlib

    body = "nz_abcdefgh" + "A" * 32
    expected = keys.base62(zlib.crc32(body.encode()), 6)
    assert keys.checksum(body) == expected
    assert keys.is_well_formed(body + expected)


def _flip(character: str) -> str:
    """Another character that keeps the key's shape (the prefix is lower-case)."""
    replacement = "B" if character.upper() != "B" else "C"
    return replacement if character.isupper() else replacement.lower()


@pytest.mark.parametrize("position", [3, 10, 11, 30, 42, 43, 48])
def test_any_single_character_change_is_rejected(position: int) -> None:
    key = keys.generate_key().secret
    broken = key[:position] + _flip(key[position]) + key[position + 1 :]
    assert broken != key
    assert not keys.is_well_formed(broken)


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "nz_",
        "Bearer nz_x",
        "sk-" + "a" * 46,
        "NZ_abcdefgh" + "A" * 38,
        "nz_ABCDEFGH" + "A" * 38,  # prefix must be lower-case
        "nz_abcdefgh" + "A" * 37,  # one short
        "nz_abcdefgh" + "A" * 39,  # one long
        "nz_abcdefgh" + "A" * 37 + "!",
        "nz_abcdefgh" + "A" * 37 + "\x00",
        "nz_abcdefgh" + "Ä" * 38,
        " nz_abcdefgh" + "A" * 37,
    ],
)
def test_malformed_keys_are_rejected(candidate: str) -> None:
    assert not keys.is_well_formed(candidate)


def test_hash_is_argon2id_with_configured_parameters() -> None:
    hasher = KeyHasher(time_cost=3, memory_kib=1024, parallelism=2)
    key = keys.generate_key().secret
    stored = hasher.hash(key)
    assert stored.startswith("$argon2id$")
    assert "m=1024,t=3,p=2" in stored
    assert key not in stored
    assert hasher.verify(stored, key)
    assert not hasher.verify(stored, keys.generate_key().secret)


def test_default_parameters_follow_owasp() -> None:
    stored = KeyHasher().hash("nz_x")
    assert "m=19456,t=2,p=1" in stored


def test_verify_with_corrupt_hash_is_false() -> None:
    assert not KeyHasher().verify("not-a-hash", "nz_x")
    assert not KeyHasher().verify("$argon2id$v=19$m=1,t=1,p=1$xx$yy", "nz_x")
