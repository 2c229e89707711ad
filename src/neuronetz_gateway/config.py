"""Settings: every docs/REFERENCE.md §7 variable, read once from the environment (and `.env`).

No other module reads the environment. `load_settings()` turns a validation failure
into `ConfigError` whose message is one line naming the variable, and never echoes the
offending value (it may be a secret such as a database password).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal, get_args, get_origin

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from neuronetz_gateway.scripting.resp import RedisAddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SQLITE_FILE_NAME = "gateway.db"
MIN_WORKERS, MAX_WORKERS = 1, 64
MAX_SLOTS = 10_000


class ConfigError(Exception):
    """Configuration is invalid; `str()` is one line naming the variable."""


def check_workers(workers: int, redis_url: str | None) -> None:
    """Refuse several worker processes without Redis (each would keep limits of its own):
    `ConfigError` naming GATEWAY_WORKERS."""
    if workers > 1 and redis_url is None:
        raise ConfigError(
            "invalid configuration: GATEWAY_WORKERS: more than 1 needs REDIS_URL; without "
            "Redis, rate limits, concurrency and budgets live in one process "
            "(docs/STANDALONE.md)"
        )


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "neuronetz-gateway"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _check_http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return url.rstrip("/")


class Settings(BaseSettings):
    """The gateway's configuration (REFERENCE.md §7). Field names map to upper-case variables."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,
    )

    # None: standalone components (docs/STANDALONE.md): SQLite under DATA_DIR, and the
    # in-process limiter.
    database_url: str | None = None
    # LISTEN needs a session of its own: a direct connection when DATABASE_URL goes
    # through PgBouncer in transaction pooling mode. None: DATABASE_URL.
    database_listen_url: str | None = None
    redis_url: str | None = None
    # REDIS_URL is one node (a seed) of a Redis Cluster; the others are discovered
    # (docs/REDIS_CLUSTER.md).
    redis_cluster: bool = False
    ollama_base_url: str = "http://127.0.0.1:11434"
    ollama_base_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Requests the gateway sends one server at once (docs/SCHEDULING.md): one number for
    # every server, or one per server in OLLAMA_BASE_URLS order; 0 = unlimited.
    ollama_slots: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [4])
    # The longest a request waits for a slot before 503 server_busy.
    queue_max_wait_seconds: float = Field(default=30.0, gt=0, le=3600)

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    # Worker processes: a number, or `auto` (one per CPU this process may use). None:
    # `auto` with Postgres and Redis, 1 in standalone mode (workers.py).
    gateway_workers: int | Literal["auto"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    # After SIGTERM: how long in-flight requests (streams) may run on before they are cut.
    shutdown_grace_seconds: int = Field(default=30, ge=0, le=3600)
    # Where worker processes share their metrics; `serve` sets it when GATEWAY_WORKERS > 1.
    prometheus_multiproc_dir: Path | None = None

    max_request_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Transport limits (server/protocol.py, docs/SECURITY.md).
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=1024, ge=1)
    # Deeper request bodies are refused before admission (docs/REFERENCE.md §11). At most
    # 254: the deepest body orjson can encode again.
    max_json_depth: int = Field(default=64, ge=2, le=254)
    # `drop`: keep_alive, runner options and _debug_render_only are removed from requests
    # (they change Ollama for every tenant); `pass`: forwarded, for one-tenant deployments.
    client_runtime_options: Literal["drop", "pass"] = "drop"
    # Tool entries of a `web_` type make Ollama reach the internet: removed unless true.
    allow_web_tools: bool = False
    upstream_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    upstream_read_timeout_seconds: float = Field(default=300.0, gt=0)
    upstream_max_connections: int = Field(default=512, ge=1)

    key_cache_ttl_seconds: float = Field(default=60.0, gt=0)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19456, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)
    # The process-wide budget of failed key verifications (auth/throttle.py): each costs
    # a Postgres lookup and an Argon2 verification: ~5 % of one core by default
    # (docs/SECURITY.md, "Wrong keys and the failure budget").
    auth_failures_per_second: float = Field(default=2.0, gt=0)
    auth_failure_burst: int = Field(default=32, ge=1)

    budget_default_max_output_tokens: int = Field(default=4096, ge=1)
    concurrency_lease_seconds: int = Field(default=30, ge=2)

    model_discovery_enabled: bool = True
    model_discovery_interval_seconds: float = Field(default=60.0, gt=0)
    model_discovery_timeout_seconds: float = Field(default=5.0, gt=0)

    audit_flush_interval_ms: int = Field(default=500, ge=1)
    audit_buffer_max_rows: int = Field(default=50_000, ge=1)
    audit_retention_days: int = Field(default=90, ge=1)
    prompt_log_default_ttl_hours: int = Field(default=24, ge=1)

    trusted_proxy_ips: Annotated[list[IPNetwork], NoDecode] = Field(default_factory=list)
    metrics_token: SecretStr | None = None
    metrics_max_tenants: int = Field(default=50, ge=0)
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)
    data_dir: Path = Field(default_factory=_default_data_dir)

    @field_validator("*", mode="before")
    @classmethod
    def _choice_in_any_case(cls, value: object, info: ValidationInfo) -> object:
        """A setting with a fixed set of values (a `Literal`) takes them in any case:
        `LOG_LEVEL=warning` is `WARNING`."""
        if not isinstance(value, str) or info.field_name is None:
            return value
        annotation = cls.model_fields[info.field_name].annotation
        if get_origin(annotation) is not Literal:
            return value
        wanted = value.strip().casefold()
        for choice in get_args(annotation):
            if isinstance(choice, str) and choice.casefold() == wanted:
                return choice
        return value

    @field_validator("gateway_workers", mode="before")
    @classmethod
    def _parse_workers(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        if not text.isdigit() or not MIN_WORKERS <= int(text) <= MAX_WORKERS:
            raise ValueError(f"must be auto or a number of workers from 1 to {MAX_WORKERS}")
        return int(text)

    @field_validator("ollama_base_urls", mode="before")
    @classmethod
    def _parse_urls(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("ollama_slots", mode="before")
    @classmethod
    def _parse_slots(cls, value: object) -> object:
        parts = _split_csv(value)
        if isinstance(parts, list):
            for part in parts:
                if not str(part).isascii() or not str(part).isdigit() or int(part) > MAX_SLOTS:
                    raise ValueError(
                        f"must be whole numbers from 0 to {MAX_SLOTS}, separated by commas"
                    )
            if not parts:
                raise ValueError("must name at least one number")
        return parts

    @model_validator(mode="after")
    def _slots_per_server(self) -> Settings:
        count = len(self.ollama_slots)
        if count != 1 and count != len(self.upstream_urls):
            raise ValueError(
                f"OLLAMA_SLOTS: {count} values for {len(self.upstream_urls)} servers; give one"
                " value, or one per server in OLLAMA_BASE_URLS order"
            )
        return self

    @field_validator("trusted_proxy_ips", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        parts = _split_csv(value)
        if isinstance(parts, list):
            return [ipaddress.ip_network(str(p), strict=False) for p in parts]
        return parts

    @field_validator("ollama_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("ollama_base_urls")
    @classmethod
    def _check_base_urls(cls, value: list[str]) -> list[str]:
        return [_check_http_url(url) for url in value]

    @field_validator("database_url", "database_listen_url", "redis_url", mode="before")
    @classmethod
    def _empty_url_is_none(cls, value: object) -> object:
        # `DATABASE_URL=` in a `.env` means "not set": the standalone component.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite:///")):
            raise ValueError("must start with postgresql+asyncpg:// or sqlite+aiosqlite:///")
        if value.startswith("sqlite") and value.removeprefix("sqlite+aiosqlite:///") in (
            "",
            ":memory:",
        ):
            raise ValueError("must name a database file (in-memory SQLite is per connection)")
        return value

    @field_validator("database_listen_url")
    @classmethod
    def _check_listen_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must start with postgresql+asyncpg:// (LISTEN is Postgres only)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("redis_cluster")
    @classmethod
    def _check_redis_cluster(cls, value: bool, info: ValidationInfo) -> bool:
        url = info.data.get("redis_url")
        if not value or "redis_url" not in info.data:
            return value  # REDIS_URL itself was invalid: that is the error to report
        if url is None:
            raise ValueError("true needs REDIS_URL: a node of the cluster")
        address = RedisAddress.from_url(url)
        if address.path is not None or address.db != 0:
            raise ValueError("a cluster's REDIS_URL is redis:// or rediss:// with database 0")
        return value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _empty_data_dir_is_default(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return _default_data_dir()
        return value

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("prometheus_multiproc_dir", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("metrics_token")
    @classmethod
    def _empty_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        return value

    @property
    def upstream_urls(self) -> list[str]:
        """The Ollama servers: `OLLAMA_BASE_URLS` when set, else `OLLAMA_BASE_URL`."""
        return list(self.ollama_base_urls) or [self.ollama_base_url]

    def slots_of(self, index: int) -> int:
        """The slots of the server at `index` in `upstream_urls` (0 = unlimited)."""
        slots = self.ollama_slots
        return slots[0] if len(slots) == 1 else slots[index]

    @property
    def effective_database_url(self) -> str:
        """`DATABASE_URL`, or standalone mode's SQLite file under `DATA_DIR`."""
        if self.database_url is not None:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / SQLITE_FILE_NAME}"

    @property
    def listen_database_url(self) -> str:
        """Where the change feed LISTENs: `DATABASE_LISTEN_URL`, else the database."""
        return self.database_listen_url or self.effective_database_url

    @property
    def uses_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def standalone(self) -> bool:
        """True unless both Postgres and Redis are configured (docs/STANDALONE.md)."""
        return self.uses_sqlite or self.redis_url is None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    location = [str(part) for part in first.get("loc", ())]
    variable = location[0].upper() if location else "configuration"
    message = str(first.get("msg", "invalid value"))
    # Model-level validators carry the variable names in their message already.
    if not location:
        return f"invalid configuration: {message.removeprefix('Value error, ')}"
    return f"invalid configuration: {variable}: {message.removeprefix('Value error, ')}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise `ConfigError` (one line) when invalid."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]  # pydantic-settings accepts field kwargs
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    except ValueError as error:  # e.g. a malformed network in TRUSTED_PROXY_IPS
        raise ConfigError(f"invalid configuration: {error}") from None
    if isinstance(settings.gateway_workers, int):
        check_workers(settings.gateway_workers, settings.redis_url)
    # Imported here: the module raises this module's ConfigError.
    from neuronetz_gateway.observability.tracing_env import check_tracing_environment

    check_tracing_environment(os.environ)
    return settings
