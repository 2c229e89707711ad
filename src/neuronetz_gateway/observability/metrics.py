"""The gateway's Prometheus metrics (docs/REFERENCE.md §5), defined in one place.

Names carry the `neuronetz_` prefix and their unit. Labels are bounded: route (the
allowlist, or the fixed word "other" for every other path), status, outcome, reason,
model (the catalog), upstream (`host:port` of configured servers), check (the readiness
checks), and tenant only on the `neuronetz_tenant_*` series of the tenants an operator
marked (at most `METRICS_MAX_TENANTS`). Never a key, a key prefix or a request id.
Recorded per request by `request_metrics`, sampled from process state by `sampler`,
readiness by `api.health`; docs/OBSERVABILITY.md.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)

REQUESTS = Counter(
    "neuronetz_requests_total",
    "Requests answered, by route, status and outcome.",
    ["route", "status", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "neuronetz_request_duration_seconds",
    "Time from the request's arrival to the end of its response.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
TIME_TO_FIRST_BYTE_SECONDS = Histogram(
    "neuronetz_time_to_first_byte_seconds",
    "Time from the request's arrival to the first byte of its response.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
ADDED_LATENCY_SECONDS = Histogram(
    "neuronetz_added_latency_seconds",
    "Time a forwarded request spent in the gateway itself: its duration minus the "
    "upstream exchange.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_SECONDS = Histogram(
    "neuronetz_upstream_duration_seconds",
    "Time spent on the upstream exchange, by upstream server.",
    ["route", "upstream"],
    buckets=LATENCY_BUCKETS,
)
TOKENS = Counter(
    "neuronetz_tokens_total",
    "Tokens as Ollama reported them, by direction (prompt, completion) and model.",
    ["direction", "model"],
)
TENANT_REQUESTS = Counter(
    "neuronetz_tenant_requests_total",
    "Requests of the tenants marked with `set-limits --metrics on`, by outcome.",
    ["tenant", "outcome"],
)
TENANT_TOKENS = Counter(
    "neuronetz_tenant_tokens_total",
    "Tokens of the tenants marked with `set-limits --metrics on`, by direction.",
    ["tenant", "direction"],
)
REFUSALS = Counter(
    "neuronetz_refusals_total",
    "Requests refused by the gateway, by reason (the audit outcome).",
    ["reason"],
)
IN_FLIGHT = Gauge(
    "neuronetz_in_flight_requests",
    "Requests being answered right now.",
    multiprocess_mode="livesum",
)
AUDIT_BUFFER_ROWS = Gauge(
    "neuronetz_audit_buffer_rows",
    "Audit rows waiting to be written to Postgres.",
    multiprocess_mode="livesum",
)
AUDIT_BUFFER_CAPACITY_ROWS = Gauge(
    "neuronetz_audit_buffer_capacity_rows",
    "AUDIT_BUFFER_MAX_ROWS: buffered rows at which requests are refused with 503.",
    multiprocess_mode="livesum",
)
AUDIT_RECORDS_DROPPED = Counter(
    "neuronetz_audit_records_dropped_total",
    "Audit records discarded because the buffer was past twice AUDIT_BUFFER_MAX_ROWS.",
)
AUDIT_RECORDS_REJECTED = Counter(
    "neuronetz_audit_records_rejected_total",
    "Audit records Postgres refused to store (logged as audit_record_rejected).",
)
AUTH_CACHE_LOOKUPS = Counter(
    "neuronetz_auth_cache_lookups_total",
    "Key cache lookups by result (hit, miss); the hit ratio is hit / (hit + miss).",
    ["result"],
)
TRANSPORT_REFUSALS = Counter(
    "neuronetz_transport_refusals_total",
    "Connections the HTTP layer refused or closed for exceeding a transport limit, by reason "
    "(header_too_large, header_timeout, body_timeout, too_many_connections).",
    ["reason"],
)
UPSTREAM_IN_FLIGHT = Gauge(
    "neuronetz_upstream_in_flight_requests",
    "Requests in flight to each upstream server.",
    ["upstream"],
    multiprocess_mode="livesum",
)
UPSTREAM_ERRORS = Counter(
    "neuronetz_upstream_errors_total",
    "Failed upstream exchanges by server and kind (connect, timeout, status, stream).",
    ["upstream", "kind"],
)
UPSTREAM_UP = Gauge(
    "neuronetz_upstream_up",
    "1 while the upstream server is in rotation, 0 while it is ejected.",
    ["upstream"],
    multiprocess_mode="min",
)
READY = Gauge(
    "neuronetz_ready",
    "1 while /readyz would answer 200, 0 while it would answer 503 (as of the last check).",
    multiprocess_mode="livemostrecent",
)
READINESS_CHECK_OK = Gauge(
    "neuronetz_readiness_check_ok",
    "1 while the readiness check (postgres, redis, ollama, ...) passes, 0 while it fails.",
    ["check"],
    multiprocess_mode="livemostrecent",
)

# The gateway's queue for Ollama's slots (docs/SCHEDULING.md, docs/REFERENCE.md §10).
QUEUE_WAIT_BUCKETS = (
    0.0,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
QUEUE_WAIT_SECONDS = Histogram(
    "neuronetz_queue_wait_seconds",
    "Time a request waited for a slot of an Ollama server (0 when one was free), observed "
    "when the wait ended: granted, timed out or left.",
    buckets=QUEUE_WAIT_BUCKETS,
)
QUEUED_REQUESTS = Gauge(
    "neuronetz_queued_requests",
    "Requests of this process waiting for a slot of an Ollama server.",
    multiprocess_mode="livesum",
)
UPSTREAM_SLOTS_IN_USE = Gauge(
    "neuronetz_upstream_slots_in_use",
    "Slots of each Ollama server (ollama_N, in OLLAMA_BASE_URLS order) held by this "
    "process's requests.",
    ["upstream"],
    multiprocess_mode="livesum",
)
