"""API key format, generation and hashing (docs/REFERENCE.md §4.3).

A key is `nz_` + 8-char prefix `[a-z0-9]` + 32-char base62 secret + 6-char base62
CRC32 of everything before it: 49 characters, ~231 bits of randomness of which the
secret alone carries ~190. The checksum lets the gateway refuse typos and garbage
without touching Redis, Postgres or Argon2.
"""

from __future__ import annotations

import re
import secrets
import string
import zlib
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from neuronetz_gateway.config import Settings

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
KEY_SCHEME = "nz_"
PREFIX_CHARS = 8
SECRET_CHARS = 32
CHECKSUM_CHARS = 6
KEY_LENGTH = len(KEY_SCHEME) + PREFIX_CHARS + SECRET_CHARS + CHECKSUM_CHARS
DISPLAY_PREFIX_LENGTH = len(KEY_SCHEME) + PREFIX_CHARS

_KEY_SHAPE = re.compile(r"nz_[a-z0-9]{8}[0-9A-Za-z]{38}")
_DISPLAY_PREFIX_SHAPE = re.compile(r"nz_[a-z0-9]{8}")


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    """A freshly generated key: `secret` is shown once, `prefix` is stored and displayed."""

    secret: str
    prefix: str


def base62(number: int, width: int) -> str:
    """`number` in base62, left-padded with '0' to `width` characters."""
    digits: list[str] = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(BASE62[remainder])
    return "".join(reversed(digits)).rjust(width, "0")


def checksum(body: str) -> str:
    """The 6-character base62 CRC32 of `body`."""
    return base62(zlib.crc32(body.encode("ascii")), CHECKSUM_CHARS)


def generate_key() -> GeneratedKey:
    """A new random key with a valid checksum."""
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_CHARS))
    secret = "".join(secrets.choice(BASE62) for _ in range(SECRET_CHARS))
    body = KEY_SCHEME + prefix + secret
    return GeneratedKey(secret=body + checksum(body), prefix=KEY_SCHEME + prefix)


def is_well_formed(key: str) -> bool:
    """True when `key` has the key shape and a matching checksum. Pure CPU, no I/O."""
    if len(key) != KEY_LENGTH or _KEY_SHAPE.fullmatch(key) is None:
        return False
    body, given = key[:-CHECKSUM_CHARS], key[-CHECKSUM_CHARS:]
    return secrets.compare_digest(checksum(body), given)


def display_prefix(key: str) -> str:
    """The `nz_xxxxxxxx` part of a well-formed key."""
    return key[:DISPLAY_PREFIX_LENGTH]


def is_display_prefix(value: str) -> bool:
    """True when `value` looks like a stored key prefix (`nz_` + 8 of `[a-z0-9]`)."""
    return _DISPLAY_PREFIX_SHAPE.fullmatch(value) is not None


class KeyHasher:
    """Argon2id hashing of whole keys with configurable cost (OWASP defaults)."""

    def __init__(self, *, time_cost: int = 2, memory_kib: int = 19456, parallelism: int = 1):
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=Type.ID,
        )

    def hash(self, key: str) -> str:
        """The PHC-format Argon2id hash of `key`."""
        return self._hasher.hash(key)

    def verify(self, key_hash: str, key: str) -> bool:
        """True when `key` matches `key_hash`; False for a mismatch or a corrupt hash."""
        try:
            return self._hasher.verify(key_hash, key)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def key_hasher(settings: Settings) -> KeyHasher:
    """The hasher of new keys: the ARGON2_* settings."""
    return KeyHasher(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
