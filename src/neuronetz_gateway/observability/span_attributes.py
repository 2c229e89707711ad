"""What a span may say about a request: every attribute the gateway's traces carry.

OpenTelemetry semantic conventions where one exists — HTTP (`http.request.method`,
`http.route`, `http.response.status_code`, `server.address`), GenAI
(`gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
`gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`) — and `neuronetz.*` for the
gateway's own facts (request ids, tenant, key prefix, outcome).

Every value comes from the gateway's bookkeeping: the allowlisted route, the catalog
model the key was authorized for, the tenant's name, the displayed key prefix, counts.
Nothing is copied from a body or from a header value except the client's
`X-Request-ID`, which is kept only in its validated form and dropped if it looks like a
key. Imports nothing of OpenTelemetry (plain dicts), so it can be tested alone.
"""

from __future__ import annotations

from neuronetz_gateway.context import Exchange
from neuronetz_gateway.outcome import Ending
from neuronetz_gateway.policy import routes
from neuronetz_gateway.policy.routes import Route

AttributeValue = str | bool | int | float

# Ollama is not among the semantic conventions' well-known providers: its own name.
PROVIDER = "ollama"

# gen_ai.operation.name of the routes that run a model.
_OPERATIONS: dict[str, str] = {
    routes.CHAT.name: "chat",
    routes.V1_CHAT.name: "chat",
    routes.V1_MESSAGES.name: "chat",
    routes.V1_RESPONSES.name: "chat",
    routes.GENERATE.name: "text_completion",
    routes.V1_COMPLETIONS.name: "text_completion",
    routes.EMBED.name: "embeddings",
    routes.EMBEDDINGS.name: "embeddings",
    routes.V1_EMBEDDINGS.name: "embeddings",
}


def operation_of(route: Route | None) -> str | None:
    """`gen_ai.operation.name` of `route`; None for routes that run no model."""
    return None if route is None else _OPERATIONS.get(route.name)


def _client_request_id(exchange: Exchange) -> str | None:
    value = exchange.client_request_id
    if value is None or "nz_" in value.lower():
        return None  # a client pasting a key here must not export it
    return value


def request_attributes(exchange: Exchange) -> dict[str, AttributeValue]:
    """The root span's attributes known when the request arrives."""
    attributes: dict[str, AttributeValue] = {
        "http.request.method": exchange.method,
        "neuronetz.request_id": exchange.request_id,
    }
    route = exchange.route
    if route is not None:
        attributes["http.route"] = route.name
    operation = operation_of(route)
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
        attributes["gen_ai.provider.name"] = PROVIDER
    client_request_id = _client_request_id(exchange)
    if client_request_id is not None:
        attributes["neuronetz.client_request_id"] = client_request_id
    if exchange.client_ip is not None:
        attributes["client.address"] = exchange.client_ip
    return attributes


def upstream_attributes(
    exchange: Exchange, upstream: str, method: str
) -> dict[str, AttributeValue]:
    """The `upstream` span's: the server (`host:port` as configured) and the model."""
    host, _, port = upstream.rpartition(":")
    attributes: dict[str, AttributeValue] = {
        "http.request.method": method,
        "server.address": host or upstream,
        "neuronetz.upstream": upstream,
    }
    if port.isdigit():
        attributes["server.port"] = int(port)
    operation = operation_of(exchange.route)
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
        attributes["gen_ai.provider.name"] = PROVIDER
    if exchange.model is not None:
        attributes["gen_ai.request.model"] = exchange.model
    return attributes


def finished_attributes(exchange: Exchange, ending: Ending) -> dict[str, AttributeValue]:
    """The root span's attributes once the request is recorded: who, which model,
    tokens as settled, status and outcome as audited."""
    attributes: dict[str, AttributeValue] = {
        "http.response.status_code": ending.status,
        "neuronetz.outcome": ending.outcome.value,
    }
    principal = exchange.principal
    if principal is not None:
        attributes["neuronetz.tenant"] = principal.tenant_name
        attributes["neuronetz.key_prefix"] = principal.key_prefix
    if exchange.model is not None:
        attributes["gen_ai.request.model"] = exchange.model
    if operation_of(exchange.route) is not None and exchange.model is not None:
        attributes["gen_ai.usage.input_tokens"] = exchange.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = exchange.completion_tokens
    if exchange.upstream is not None:
        attributes["neuronetz.upstream"] = exchange.upstream
    return attributes
