"""Slots and routes computed by the gateway agree with Redis's own (no network for the
routes; the slots are checked against redis-py and against a real cluster node)."""

from __future__ import annotations

import uuid

import hiredis
import pytest
from redis.crc import key_slot as redis_py_key_slot

from neuronetz_gateway.limits.keys import Periods, subject_keys
from neuronetz_gateway.redis_cluster.routing import ANY, MASTERS, Route, route
from neuronetz_gateway.redis_cluster.slots import key_slot
from neuronetz_gateway.redis_cluster.topology import Redirect, SlotMap, redirect_of
from neuronetz_gateway.scripting.resp import pack_items
from tests.support.redis_cluster import RedisClusterNodes

TRICKY_KEYS = [
    "plain",
    "{tag}a",
    "a{tag}",
    "{}empty",
    "{",
    "}{",
    "a{b}{c}",
    "{{x}}",
    "nz:lim:{0f4d}:k:{1}:rpm",
    "",
    "é{ü}",
]


@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_key_slot_matches_redis_py(key: str) -> None:
    assert key_slot(key) == redis_py_key_slot(key.encode())


def test_key_slot_matches_a_cluster_node(cluster: RedisClusterNodes) -> None:
    for key in [*TRICKY_KEYS, *(uuid.uuid4().hex for _ in range(50))]:
        assert key_slot(key) == cluster.command(cluster.ports[0], "CLUSTER KEYSLOT", key)


def test_every_key_of_one_admission_is_in_the_tenants_slot() -> None:
    """Key and tenant counters of one admission share the `{tenant id}` tag, so the
    scripts' keys never span two slots (docs/REDIS_CLUSTER.md)."""
    tenant = uuid.uuid4()
    periods = Periods.at(1_800_000_000)
    keys = [
        *subject_keys(tenant, uuid.uuid4(), periods).as_tuple(),
        *subject_keys(tenant, None, periods).as_tuple(),
    ]
    assert {key_slot(key) for key in keys} == {key_slot(str(tenant))}


def _route(*args: str) -> Route:
    return route(len(args), pack_items(args))


def test_scripts_go_to_the_slot_of_their_first_key() -> None:
    assert _route("EVALSHA", "ab" * 20, "2", "{t}x", "{t}y", "arg") == Route("slot", key_slot("t"))
    assert _route("evalsha_ro", "ab" * 20, "1", "k") == Route("slot", key_slot("k"))
    assert _route("FCALL", "f", "1", "{q}k") == Route("slot", key_slot("q"))
    assert _route("EVAL", "return 1", "0") == ANY


def test_data_commands_go_to_the_slot_of_their_first_argument() -> None:
    assert _route("ZCARD", "{nzq}ready") == Route("slot", key_slot("nzq"))
    assert _route("get", "key\r\nwith crlf") == Route("slot", key_slot("key\r\nwith crlf"))


def test_administration_goes_to_every_master_and_the_rest_anywhere() -> None:
    assert _route("SCRIPT", "LOAD", "return 1") == MASTERS
    assert _route("FLUSHDB") == MASTERS
    assert _route("PING") == ANY
    assert _route("CLUSTER", "SLOTS") == ANY
    assert _route("INFO", "server") == ANY


def test_redirections_are_parsed() -> None:
    asked = ("10.0.0.1", 7000)
    moved = hiredis.ReplyError("MOVED 3999 127.0.0.1:6381")
    ask = hiredis.ReplyError("ASK 12 :6382")
    assert redirect_of(moved, asked) == Redirect("MOVED", 3999, ("127.0.0.1", 6381))
    assert redirect_of(ask, asked) == Redirect("ASK", 12, ("10.0.0.1", 6382))
    assert redirect_of(hiredis.ReplyError("TRYAGAIN Multiple keys"), asked) == Redirect("TRYAGAIN")
    assert redirect_of(hiredis.ReplyError("CLUSTERDOWN The cluster is down"), asked) == Redirect(
        "CLUSTERDOWN"
    )
    assert redirect_of(hiredis.ReplyError("NOSCRIPT No matching script"), asked) is None
    assert redirect_of(b"MOVED 1 h:1", asked) is None  # a value, not an error reply


def test_slot_map_from_cluster_slots() -> None:
    reply = [
        [0, 99, [b"127.0.0.1", 7000, b"id-a", {}]],
        [100, 16383, [b"", 7001, b"id-b", {}], [b"127.0.0.1", 7100, b"id-r"]],
    ]
    slot_map = SlotMap.parse(reply, ("10.1.1.1", 7001))
    assert slot_map.owners[0] == slot_map.owners[99] == ("127.0.0.1", 7000)
    assert slot_map.owners[100] == slot_map.owners[16383] == ("10.1.1.1", 7001)
    assert slot_map.masters == (("127.0.0.1", 7000), ("10.1.1.1", 7001))
    moved = slot_map.moved(5, ("127.0.0.1", 7001))
    assert moved.owners[5] == ("127.0.0.1", 7001)
    assert slot_map.owners[5] == ("127.0.0.1", 7000)
