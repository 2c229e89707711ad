# syntax=docker/dockerfile:1
#
# neuronetz-gateway image (docs/REFERENCE.md §8): a uv builder stage installs the locked runtime
# dependencies and the project into a virtual environment; the runtime stage is a slim
# Python with that environment, running as an unprivileged user. No compiler, no uv and
# no development dependency reaches the final image.
#
# Build:  docker build -t neuronetz-gateway:0.1.0 .
# Run:    see docker-compose.yml and docs/DEPLOYMENT.md

# uv at the version the lock file is made with; bump both together.
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM python:3.12.12-slim-bookworm AS builder

COPY --from=uv /uv /usr/local/bin/uv

# The virtual environment lives at the path it keeps in the runtime image: its scripts'
# shebangs are absolute. Bytecode is compiled here because the runtime tree is read-only.
ENV UV_PROJECT_ENVIRONMENT=/opt/neuronetz-gateway/.venv \
    UV_PYTHON=/usr/local/bin/python3.12 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /src

# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --no-install-project

# Then the project itself, installed as a regular (non-editable) package.
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable


FROM python:3.12.12-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="neuronetz-gateway" \
      org.opencontainers.image.description="Secure multi-tenant API gateway in front of Ollama" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed uid/gid so volume ownership and policies (e.g. runAsUser) can name it.
RUN groupadd --system --gid 10001 neuronetz \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin neuronetz

# Owned by root and not writable by the gateway's user.
COPY --from=builder /opt/neuronetz-gateway/.venv /opt/neuronetz-gateway/.venv

ENV PATH=/opt/neuronetz-gateway/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    LOG_FORMAT=json

# No `.env` is ever read from here (it is excluded from the build context, too).
WORKDIR /opt/neuronetz-gateway

USER 10001:10001

EXPOSE 8080

# curl is not in the slim image; Python is. Proxies from the environment are ignored:
# this must reach the process itself, never a proxy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:' + os.environ.get('GATEWAY_PORT', '8080') + '/healthz', timeout=3)"]

# `serve` runs the migrations (under an advisory lock, so replicas may start together),
# then uvicorn. Exec form: the gateway is PID 1 and receives SIGTERM itself.
CMD ["neuronetz-gateway", "serve"]
