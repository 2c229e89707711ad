"""Where a request presents its API key (docs/REFERENCE.md §4.3, §12).

`Authorization: Bearer <key>` or `x-api-key: <key>` (the Anthropic clients' header), on
every route. Both may be sent with the same key; two different keys are refused. A
request that presents no key at all is told so, in a message of its own; every key that
is presented but wrong gets the one message of `unauthorized` (decided later, by the
authenticator). An `Authorization` header of another scheme is not a key: next to an
`x-api-key` it is ignored, alone it is a wrong credential.
"""

from __future__ import annotations

from neuronetz_gateway.errors import GatewayError, unauthorized
from neuronetz_gateway.outcome import Outcome

AUTHORIZATION = b"authorization"
API_KEY = b"x-api-key"


def missing_key() -> GatewayError:
    """401 for a request that presents no key at all."""
    return GatewayError(
        401,
        "missing API key: send Authorization: Bearer <key> or x-api-key",
        Outcome.AUTH_FAILED,
        code="missing_api_key",
        headers={"www-authenticate": "Bearer"},
    )


def conflicting_keys() -> GatewayError:
    """401 for a request whose two headers carry different keys."""
    return GatewayError(
        401,
        "Authorization and x-api-key carry different keys; send one key",
        Outcome.AUTH_FAILED,
        code="invalid_api_key",
        headers={"www-authenticate": "Bearer"},
    )


def bearer_token(authorization: bytes) -> bytes | None:
    """The token of a `Bearer` authorization header (not yet checked), or None."""
    scheme, _, token = authorization.partition(b" ")
    return token if scheme.lower() == b"bearer" and token else None


def presented_key(authorization: bytes | None, api_key: bytes | None) -> str:
    """The key the request presents (not yet checked), or a 401."""
    authorization = authorization.strip() if authorization else None
    api_key = api_key.strip() if api_key else None
    if not authorization and not api_key:
        raise missing_key()
    bearer = bearer_token(authorization) if authorization else None
    if bearer is not None and api_key is not None and bearer != api_key:
        raise conflicting_keys()
    key = bearer or api_key
    if key is None:
        raise unauthorized()  # an Authorization header of another scheme, alone
    try:
        return key.decode("ascii")
    except UnicodeDecodeError:
        raise unauthorized() from None
