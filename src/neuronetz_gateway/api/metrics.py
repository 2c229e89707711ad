"""`/metrics` in Prometheus text format (docs/REFERENCE.md §5), never open to everyone.

- With `METRICS_TOKEN` set, only `Authorization: Bearer <token>` opens it (401
  otherwise, from any address).
- Without it, it answers clients on the loopback interface only (a Prometheus or an
  operator on the gateway's own machine); anyone else gets the 404 of a path that does
  not exist. The client is the socket peer, or, behind `TRUSTED_PROXY_IPS`, the client
  its `X-Forwarded-For` names (as for every request): a proxy on the same machine does
  not make the internet loopback.

With several workers the answer adds up every worker's values (observability.multiprocess).
Each scrape first refreshes the readiness gauges (the checks of `/readyz`, cached ~1 s),
so an alert on readiness needs nothing but Prometheus.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from neuronetz_gateway.config import Settings
from neuronetz_gateway.errors import Surface, error_body
from neuronetz_gateway.observability.multiprocess import scrape_registry
from neuronetz_gateway.proxy.headers import client_address

router = APIRouter()

JSON = "application/json"


def _token_matches(request: Request, token: SecretStr) -> bool:
    given = request.headers.get("authorization", "")
    expected = "Bearer " + token.get_secret_value()
    return hmac.compare_digest(given.encode(), expected.encode())


def is_loopback_client(request: Request, settings: Settings) -> bool:
    """True when the request's client (after trusted proxies) is a loopback address."""
    peer = request.client.host if request.client else None
    forwarded = [value.encode("latin-1") for value in request.headers.getlist("x-forwarded-for")]
    client = client_address(peer, forwarded, settings.trusted_proxy_ips)
    try:
        return client is not None and ipaddress.ip_address(client).is_loopback
    except ValueError:
        return False


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if settings.metrics_token is not None:
        if not _token_matches(request, settings.metrics_token):
            return Response(
                error_body(Surface.NATIVE, 401, "metrics token required"),
                status_code=401,
                media_type=JSON,
                headers={"www-authenticate": "Bearer"},
            )
    elif not is_loopback_client(request, settings):
        return Response(
            error_body(Surface.NATIVE, 404, "not found"), status_code=404, media_type=JSON
        )
    readiness = getattr(request.app.state, "readiness", None)
    if readiness is not None:
        await readiness.results()
    sampler = getattr(request.app.state, "metrics_sampler", None)
    if sampler is not None:
        sampler.sample()  # this process's gauges as of now, not as of the last second
    registry = scrape_registry(settings)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
