"""`REDIS_CLUSTER`: what it accepts, what it refuses, what it makes the gateway build."""

from __future__ import annotations

import pytest

from neuronetz_gateway import backends
from neuronetz_gateway.config import ConfigError, load_settings
from neuronetz_gateway.redis_cluster import ClusterClient
from neuronetz_gateway.resources import create_redis
from neuronetz_gateway.scripting.resp import RespClient


def test_redis_cluster_makes_redis_url_a_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@db/x")
    monkeypatch.setenv("REDIS_URL", "redis://:pw@redis-0.redis:6379/0")
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    settings = load_settings(_env_file=None)
    assert settings.redis_cluster
    assert settings.redis_url is not None
    assert isinstance(create_redis(settings.redis_url, cluster=True), ClusterClient)
    assert backends.describe(settings)["limiter"] == "redis-cluster"


def test_one_redis_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    settings = load_settings(_env_file=None)
    assert not settings.redis_cluster
    assert isinstance(create_redis("redis://cache:6379/2"), RespClient)


@pytest.mark.parametrize(
    ("redis_url", "reason"),
    [
        (None, "needs REDIS_URL"),
        ("redis://:hunter2-secret@cache:6379/3", "database 0"),
        ("unix:///run/redis.sock", "redis://"),
    ],
)
def test_impossible_cluster_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, redis_url: str | None, reason: str
) -> None:
    if redis_url is not None:
        monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert message.startswith("invalid configuration: REDIS_CLUSTER: ")
    assert reason in message
    assert "hunter2" not in message
