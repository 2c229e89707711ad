"""`/metrics` in Prometheus text format, behind `METRICS_TOKEN` when one is set (REFERENCE.md §5).

With several workers the answer adds up every worker's values (observability.multiprocess).
Each scrape first refreshes the readiness gauges (the checks of `/readyz`, cached ~1 s),
so an alert on readiness needs nothing but Prometheus.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from neuronetz_gateway.errors import Surface, error_body
from neuronetz_gateway.observability.multiprocess import scrape_registry

router = APIRouter()


def _authorized(request: Request) -> bool:
    token = request.app.state.settings.metrics_token
    if token is None:
        return True
    given = request.headers.get("authorization", "")
    expected = "Bearer " + token.get_secret_value()
    return hmac.compare_digest(given.encode(), expected.encode())


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    if not _authorized(request):
        return Response(
            error_body(Surface.NATIVE, 401, "metrics token required"),
            status_code=401,
            media_type="application/json",
            headers={"www-authenticate": "Bearer"},
        )
    readiness = getattr(request.app.state, "readiness", None)
    if readiness is not None:
        await readiness.results()
    sampler = getattr(request.app.state, "metrics_sampler", None)
    if sampler is not None:
        sampler.sample()  # this process's gauges as of now, not as of the last second
    registry = scrape_registry(request.app.state.settings)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
