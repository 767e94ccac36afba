"""The registry never leaves a process without a model while a good version is on disk: a
corrupt current version, a store that cannot be reached at start, a file that does not match
its manifest checksum. Real version directories (tests/serving/model_files.py), really
corrupted; the store is a MemoryStore, or a real redis-server that is not running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from blink import layout
from blink.candidates import SourceSizes
from blink.config import Config, ServingConfig
from blink.keys import Keys
from blink.store import MemoryStore, RedisStore
from serving.app import bounded_client
from serving.registry import Registry
from serving.router import Router
from tests.serving.model_files import write_version
from tools.redis_server import RedisServer


def registry_for(store: object, artifacts: Path) -> Registry:
    return Registry(store, artifacts, SourceSizes(ann=30))  # type: ignore[arg-type]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_corrupt_current_version_serves_the_previous_good_one(tmp_path: Path) -> None:
    write_version(tmp_path, "v1", published_at_ms=1000)
    truncate(write_version(tmp_path, "v2", published_at_ms=2000) / layout.EMBEDDINGS)
    store = MemoryStore()
    store.current = "v2"
    registry = registry_for(store, tmp_path)
    assert registry.refresh() is True
    assert (registry.version, registry.source) == ("v1", "disk")
    assert registry.last_error and registry.last_error.startswith("version v2 failed to load: ")
    assert "serving v1, the newest loadable version on local disk" in registry.last_error
    # The broken version is not loaded again on every poll; a fixed one (new manifest) is.
    assert registry.refresh() is False and registry.version == "v1"
    (tmp_path / "v2").rename(tmp_path / "v2-broken")
    write_version(tmp_path, "v2", published_at_ms=2001)
    assert registry.refresh() is True and (registry.version, registry.source) == ("v2", "store")
    assert registry.last_error is None


def test_a_checksum_mismatch_is_refused_even_when_the_file_still_loads(tmp_path: Path) -> None:
    write_version(tmp_path, "v1", published_at_ms=1000, checksums=True)
    v2 = write_version(tmp_path, "v2", published_at_ms=2000, checksums=True)
    meta = layout.features_dir(v2, "serve") / "meta.json"
    changed = json.loads(meta.read_text())
    changed["trending"].reverse()  # valid JSON, loads fine: only the checksum can tell
    meta.write_text(json.dumps(changed))
    store = MemoryStore()
    store.current = "v2"
    registry = registry_for(store, tmp_path)
    assert registry.refresh() is True and registry.version == "v1"
    assert "does not match its manifest checksum" in (registry.last_error or "")


def test_nothing_loadable_anywhere_is_not_ready_with_the_reason(tmp_path: Path) -> None:
    truncate(write_version(tmp_path, "v1", published_at_ms=1000) / layout.EMBEDDINGS)
    store = MemoryStore()
    store.current = "v1"
    registry = registry_for(store, tmp_path)
    assert registry.refresh() is False and registry.version is None
    assert (registry.last_error or "").startswith("version v1 failed to load: ")


@pytest.mark.integration
def test_redis_down_at_start_serves_the_newest_version_on_disk_then_the_published_one(tmp_path: Path) -> None:
    write_version(tmp_path / "artifacts", "v1", published_at_ms=1000)
    write_version(tmp_path / "artifacts", "v2", published_at_ms=2000)
    server = RedisServer.start(tmp_path / "redis", aof=False)
    port = server.port
    server.stop()  # a real server that is down when the worker starts
    cfg = Config(paths={"var_dir": tmp_path / "var"}, redis={"url": f"redis://127.0.0.1:{port}/0"})
    registry = registry_for(RedisStore(bounded_client(cfg), Keys("t")), tmp_path / "artifacts")
    assert registry.refresh() is True
    assert (registry.version, registry.source) == ("v2", "disk")
    assert (registry.last_error or "").startswith("store unreachable: ")
    server = RedisServer.start(tmp_path / "redis", port=port, aof=False)  # Redis comes back: v1 is published
    try:
        RedisStore(redis.Redis(port=port), Keys("t")).publish("v1", [], [], {})
        assert registry.refresh() is True and (registry.version, registry.source) == ("v1", "store")
    finally:
        server.stop()


def test_with_no_loadable_version_the_fallback_is_the_shipped_trending_list(tmp_path: Path) -> None:
    """Empty lists only when there is nothing at all: every version's embeddings are corrupt, yet
    the newest version's trending list (its serve-time meta.json) still answers."""
    truncate(write_version(tmp_path, "v1", published_at_ms=1000) / layout.EMBEDDINGS)
    truncate(write_version(tmp_path, "v2", published_at_ms=2000) / layout.EMBEDDINGS)
    store = MemoryStore()
    store.current = "v2"
    registry = registry_for(store, tmp_path)
    assert registry.refresh() is False and registry.version is None
    assert "answering trending of v2" in (registry.last_error or "")
    router = Router(ServingConfig(), store, registry)
    answer = router.recommend("u0", k=5)
    assert (answer.path, answer.model_version, answer.reason) == ("fallback", None,
                                                                  "no model version loads: trending of v2")
    assert [i["item_id"] for i in answer.items] == ["i0", "i1", "i2", "i3", "i4"]
