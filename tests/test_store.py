"""One behaviour suite, run against both store backends (Redis for real, and in-memory)."""

from collections.abc import Iterator

import pytest
import redis

from blink.keys import Keys
from blink.store import MemoryStore, RecStore, RedisStore


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[RecStore]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        client: redis.Redis = request.getfixturevalue("redis_client")
        yield RedisStore(client, Keys("t"))


def test_empty_store_has_no_version(store: RecStore) -> None:
    assert store.current_version() is None
    assert store.head_list("v1", "u1") is None


def test_publish_then_read(store: RecStore) -> None:
    store.publish("v1", [("u1", [("a", 2.0), ("b", 1.0)])], [("t", 9.0)], {"version": "v1"})
    assert store.current_version() == "v1"
    assert store.head_list("v1", "u1") == [("a", 2.0), ("b", 1.0)]
    assert store.head_list("v1", "nobody") is None
    assert store.trending("v1") == [("t", 9.0)]
    assert store.meta("v1") == {"version": "v1"}


def test_new_version_switches_and_old_stays_for_rollback(store: RecStore) -> None:
    store.publish("v1", [("u1", [("a", 1.0)])], [], {"v": 1})
    store.publish("v2", [("u1", [("b", 1.0)])], [], {"v": 2})
    assert store.current_version() == "v2"
    assert store.head_list("v1", "u1") == [("a", 1.0)]
    store.switch("v1")  # type: ignore[attr-defined]
    assert store.current_version() == "v1"


def test_old_versions_expire_beyond_keep(store: RecStore) -> None:
    for n in range(5):
        store.publish(f"v{n}", [("u", [("i", float(n))])], [], {"n": n}, keep=2)
    assert store.versions() == ["v3", "v4"]
    assert store.head_list("v0", "u") is None
    assert store.head_list("v4", "u") == [("i", 4.0)]


def test_redis_store_touches_only_its_prefix(redis_client: redis.Redis) -> None:
    redis_client.set("someone-else:key", "keep me")
    store = RedisStore(redis_client, Keys("t"))
    for n in range(4):
        store.publish(f"v{n}", [("u", [("i", 1.0)])], [], {}, keep=1)
    assert redis_client.get("someone-else:key") == b"keep me"
