"""Which request field a JSON object key sets, as Ollama's Go decoder decides it
(docs/REFERENCE.md §11).

Ollama decodes bodies with Go's `encoding/json`: a key sets the struct field whose name
equals it exactly, else the one equal to it under Unicode *simple* case folding. Every
field name of Ollama's request structs is ASCII, and only two non-ASCII characters fold
to ASCII: U+212A KELVIN SIGN (k) and U+017F LATIN SMALL LETTER LONG S (s) — a test
checks this against Go's own decoder. So a key sets field `f` exactly when, with those
two replaced and ASCII letters lower-cased, it equals `f`. (Python's `str.casefold` is
full case folding: it also turns `ﬆ` into `st`, which Go never matches, so it cannot
stand in here.)

Maps (`options`, tool arguments) are not structs: Go looks their keys up exactly.
"""

from __future__ import annotations

from typing import Any

_FOLDS_TO_ASCII = {0x212A: "k", 0x017F: "s"}


def field_name(key: str) -> str | None:
    """The lower-case field name `key` sets in Go, or None when it can set none."""
    if key.isascii():
        return key.lower()
    folded = key.translate(_FOLDS_TO_ASCII)
    return folded.lower() if folded.isascii() else None


class Fields:
    """The keys of one JSON object by the field they set.

    Built on objects the strict parser accepted (docs/REFERENCE.md §11), where no two
    keys set the same field. An object whose keys are all lower-case ASCII (nearly every
    real one) is looked up directly; others get an index once.
    """

    __slots__ = ("_index", "object")

    def __init__(self, obj: dict[str, Any]) -> None:
        self.object = obj
        joined = "".join(obj)
        self._index: dict[str, str] | None = (
            None
            if joined.isascii() and joined.lower() == joined
            else {name: key for key in obj if (name := field_name(key)) is not None}
        )

    def key(self, name: str) -> str | None:
        """The key that sets field `name` (lower-case), or None."""
        if self._index is None:
            return name if name in self.object else None
        return self._index.get(name)

    def get(self, name: str) -> Any:
        """The value of field `name`; None when absent (as JSON null leaves a field unset)."""
        key = self.key(name)
        return None if key is None else self.object[key]

    def key_for_writing(self, name: str) -> str:
        """The key to set field `name` with: the client's own spelling, if it sent one."""
        return self.key(name) or name


def fields_of(value: Any) -> Fields | None:
    """`Fields` of `value` when it is a JSON object, else None."""
    return Fields(value) if isinstance(value, dict) else None
