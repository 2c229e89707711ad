"""`Script`: one Lua script, the same text on Redis and on the in-process host.

A script is written once for Redis (`EVALSHA` semantics: `KEYS`, `ARGV`,
`redis.call`) and loaded from the package that owns it. Several files can make one
script (shared helpers first), so no Lua is duplicated between scripts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources


@dataclass(frozen=True, slots=True)
class Script:
    """A named Lua source and its SHA1 (the name Redis knows it by)."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", digest)

    @classmethod
    def load(cls, package: str, *files: str, name: str | None = None) -> Script:
        """The files (package resources, e.g. "lua/common.lua", "lua/admit.lua") joined
        by newlines into one script, named `name` or after its last file's stem."""
        parts = [resources.files(package).joinpath(path).read_text("utf-8") for path in files]
        stem = files[-1].rsplit("/", 1)[-1].removesuffix(".lua")
        return cls(name or stem, "\n".join(parts))
