"""``blink versions`` and ``blink rollback`` as a user runs them: the real command against a real
redis-server (the test's own, by REDIS_URL) and real version directories on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from blink.keys import Keys
from blink.store import RedisStore
from tests.serving.model_files import write_version
from tests.tools.blink_cli import blink, env_for
from tools.redis_server import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
def versions(tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis) -> dict[str, str]:
    """v0 on disk only (expired from the store), v1 and v2 complete and in the store (v2 served),
    v3 a directory whose publish never finished (no manifest)."""
    var = tmp_path / "var"
    artifacts = var / "artifacts"
    for n in range(3):
        write_version(artifacts, f"v{n}", published_at_ms=1_790_000_000_000 + n * 3_600_000, checksums=True)
    manifest = artifacts / "v2" / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {
        "eval": {"users": 9, "two_stage": {"ndcg@20": 0.1234, "recall@20": 0.4321}}, "fitted_from": "v1"}))
    (artifacts / "v3").mkdir()
    store = RedisStore(redis_client, Keys("blink"))
    store.publish("v1", [], [], {"version": "v1"})
    store.publish("v2", [], [], {"version": "v2"})
    return env_for(var, REDIS_URL=redis_server.url, COLUMNS="200")


def current(redis_client: redis.Redis) -> str | None:
    return RedisStore(redis_client, Keys("blink")).current_version()


def test_versions_lists_disk_and_store_and_marks_the_served_one(versions: dict[str, str]) -> None:
    done = blink("versions", "--json", env=versions)
    assert done.returncode == 0, done.stderr
    rows = {r["version"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(rows) == {"v0", "v1", "v2", "v3"}
    assert [v for v, r in rows.items() if r["served"]] == ["v2"]
    assert (rows["v2"]["complete"], rows["v2"]["in_store"], rows["v2"]["eval"]["two_stage"]["ndcg@20"]) == \
        (True, True, 0.1234)
    assert (rows["v0"]["complete"], rows["v0"]["in_store"]) == (True, False)
    assert (rows["v3"]["complete"], rows["v3"]["as_of_ms"]) == (False, None)
    table = blink("versions", env=versions)
    assert table.returncode == 0, table.stderr
    served = next(line for line in table.stdout.splitlines() if "served" in line)
    assert "v2" in served and "0.1234" in served and "0.4321" in served and "2026-" in served


def test_rollback_switches_the_pointer_and_says_how_to_undo(versions: dict[str, str],
                                                           redis_client: redis.Redis) -> None:
    done = blink("rollback", "v1", env=versions)
    assert done.returncode == 0, done.stderr
    assert "now names v1" in done.stderr and "blink rollback v2" in done.stderr
    assert current(redis_client) == "v1"
    assert blink("rollback", "v2", env=versions).returncode == 0 and current(redis_client) == "v2"


@pytest.mark.parametrize(("version", "says"), [
    ("v9", "there is no version 'v9'"),
    ("v3", "not complete"),
    ("v0", "no longer in the store"),
])
def test_rollback_refuses_unknown_incomplete_and_expired_versions(versions: dict[str, str],
                                                                  redis_client: redis.Redis,
                                                                  version: str, says: str) -> None:
    done = blink("rollback", version, env=versions)
    assert done.returncode != 0 and says in " ".join(done.stderr.split()), done.stderr
    assert current(redis_client) == "v2"  # nothing changed


def test_rollback_refuses_a_version_whose_files_do_not_match_its_manifest(
        versions: dict[str, str], redis_client: redis.Redis) -> None:
    broken = Path(versions["BLINK_PATHS__VAR_DIR"]) / "artifacts" / "v1" / "embeddings.npz"
    broken.write_bytes(broken.read_bytes()[:100])
    done = blink("rollback", "v1", env=versions)
    assert done.returncode != 0 and "checksum" in done.stderr and current(redis_client) == "v2"
