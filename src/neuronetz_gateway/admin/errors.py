"""The one error type of administrative operations."""


class AdminError(Exception):
    """A refused administrative operation; `str()` is one line for the operator."""
