"""POST /admin/rollback against the real app under gunicorn (2 workers) and a real redis-server:
the store's pointer switches once, and every worker moves to the older version through its
own reload loop, with no restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
import requests

from blink.keys import Keys
from blink.store import RedisStore
from tests.serving.test_gunicorn_faults import publish, redis_up, start_gunicorn, stop  # noqa: F401 - fixture
from tools.redis_server import RedisServer

pytestmark = pytest.mark.integration


def test_http_admin_rollback_moves_every_worker_to_the_older_version(tmp_path: Path,
                                                                     redis_up: RedisServer) -> None:  # noqa: F811
    publish(tmp_path, redis_up)  # v1 and v2 on disk, v2 published
    store = RedisStore(redis.Redis(port=redis_up.port), Keys("blink"))
    store.publish("v1", [], [], {"version": "v1"})  # both in the store, v2 served again
    store.publish("v2", [("u0", [("i9", 2.0)])], [], {"version": "v2"})
    server = start_gunicorn(tmp_path, redis_up.url, "--env", "BLINK_SERVING__INGEST_TOKEN=adm1n",
                            "--env", "BLINK_SERVING__RELOAD_SECONDS=0.3")
    url = f"{server.base}/admin/rollback"
    try:
        assert requests.post(url, json={"version": "v1"}, timeout=10).status_code == 401
        assert store.current_version() == "v2"
        r = requests.post(url, json={"version": "v1"}, headers={"Authorization": "Bearer adm1n"}, timeout=10)
        assert r.status_code == 200 and r.json()["previous"] == "v2", r.text
        assert store.current_version() == "v1"
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and seen[-20:] != ["v1"] * 20:  # 20 in a row: both workers moved
            seen.append(requests.get(f"{server.base}/v1/recommendations/u1?k=3", timeout=10).json()["model_version"])
        assert seen[-20:] == ["v1"] * 20, seen[-30:]
    finally:
        stop(server)
