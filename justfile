# neuronetz-gateway tasks. Run with `uv run just <task>` (just comes with the dev dependencies).

set dotenv-load := false

# List the tasks
default:
    @just --list

# Start the gateway on GATEWAY_PORT (default 8080); runs the migrations first
dev:
    uv run neuronetz-gateway serve

# Everything CI checks: ruff, mypy --strict, bandit, then the test suite
test: lint typecheck security
    uv run pytest

# ruff lint and format check
lint:
    uv run ruff check src tests bench
    uv run ruff format --check src tests bench

# mypy --strict over src, tests and bench
typecheck:
    uv run mypy --strict

# bandit over the shipped code
security:
    uv run bandit -q -c pyproject.toml -r src

# Apply the database migrations
migrate:
    uv run neuronetz-gateway migrate

# The benchmark (bench/README.md)
bench:
    uv run python -m bench
