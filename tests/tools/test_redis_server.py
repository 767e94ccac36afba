"""Blink's own redis-server: the configured password (requirepass), a memory bound with a
policy that never evicts events, owner-only files, and `blink stop` that stops only this var
dir's server. Real redis-server processes on free ports, real `blink` commands."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
import redis

from blink import config
from blink.errors import SetupError
from serving.app import create_app
from tests.tools.blink_cli import blink, env_for
from tools import processes, redis_server

pytestmark = pytest.mark.integration
PASSWORD = "#s3cret x"  # YAML would have read this as None: auth off


def load(var: Path, **extra: str) -> config.Config:
    return config.load(None, env_for(var, **extra))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_own_server_requires_the_password_and_is_bounded(tmp_path: Path) -> None:
    cfg = load(tmp_path / "var", BLINK_REDIS__PASSWORD=PASSWORD, BLINK_REDIS__MAXMEMORY="64mb")
    redis_server.ensure(cfg)
    server = redis_server.running(cfg)
    assert server is not None
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).ping()  # no password: refused
        client = redis.Redis(port=server.port, password=PASSWORD)
        assert client.config_get("maxmemory")["maxmemory"] == str(64 << 20)
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert PASSWORD not in " ".join(processes.cmdline(server.pid))  # not visible in ps
        client.set("k", "v")
        aof = list((cfg.layout.redis / "appendonlydir").iterdir())
        assert aof and all(mode(f) == 0o600 for f in aof), [(f.name, oct(mode(f))) for f in aof]
        assert mode(cfg.layout.redis) == 0o700 and mode(cfg.layout.redis / redis_server.CONF_FILE) == 0o600
    finally:
        assert redis_server.stop(cfg) == "stopped Blink's redis-server"


def test_a_wrong_or_missing_password_is_a_clear_error(tmp_path: Path) -> None:
    var = tmp_path / "var"
    cfg = load(var, BLINK_REDIS__PASSWORD=PASSWORD)
    redis_server.ensure(cfg)
    try:
        for other in (load(var, BLINK_REDIS__PASSWORD="wrong"), load(var)):
            with pytest.raises(SetupError, match="refused authentication.*BLINK_REDIS__PASSWORD"):
                redis_server.ensure(other)
        # the same through the CLI: a clear message and exit 2, not a traceback
        done = blink("serve", "--daemon", "--port", str(redis_server.free_port()), env=env_for(var))
        assert done.returncode == 2 and "refused authentication" in done.stderr, done.stderr
        # and for a server given by REDIS_URL
        url = redis_server.ensure(cfg)
        with pytest.raises(SetupError, match=f"Redis at {url} refused authentication"):
            redis_server.ensure(load(tmp_path / "other", REDIS_URL=url, BLINK_REDIS__PASSWORD="wrong"))
    finally:
        redis_server.stop(cfg)


def test_a_full_redis_refuses_events_with_503_and_keeps_what_it_has(tmp_path: Path) -> None:
    """noeviction: past maxmemory, writes are refused (POST /v1/events answers 503, nothing
    taken) and nothing already stored (stream, markers, the current version) is evicted."""
    cfg = load(tmp_path / "var", BLINK_REDIS__MAXMEMORY="3mb")
    redis_server.ensure(cfg)
    try:
        app = create_app(cfg, start_reload=False)
        event = {"event_id": "e1", "user_id": "u1", "session_id": "s1", "item_id": "i1", "event_type": "click",
                 "timestamp": 1_790_000_000_000, "device": "mobile"}
        assert app.test_client().post("/v1/events", json=event).status_code == 202
        client = redis.Redis(port=redis_server.running(cfg).port)  # type: ignore[union-attr]
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for n in range(1000):
                client.set(f"filler:{n}", "x" * 100_000)
        # Right at the limit, freed query buffers let a write through now and then; a bound well
        # below what is stored makes "full" deterministic for the rest of the test.
        client.config_set("maxmemory", "1mb")
        before = client.dbsize()
        r = app.test_client().post("/v1/events", json={**event, "event_id": "e2"})
        assert r.status_code == 503 and "'maxmemory'" in r.json["message"] and "nothing was lost" in r.json["message"]
        assert client.dbsize() == before and client.xlen(f"{cfg.redis.key_prefix}:events") == 1
    finally:
        redis_server.stop(cfg)


def test_blink_stop_in_a_copied_var_dir_leaves_the_original_alone(tmp_path: Path) -> None:
    original, copy = tmp_path / "a" / "var", tmp_path / "b" / "var"
    cfg = load(original)
    redis_server.ensure(cfg)
    server = redis_server.running(cfg)
    assert server is not None
    try:
        shutil.copytree(original, copy, ignore=shutil.ignore_patterns("appendonlydir"))
        done = blink("stop", env=env_for(copy))
        assert done.returncode == 0 and "left it alone" in done.stderr, done.stderr
        assert server.alive()
        # the copy gets a server of its own instead of sharing the original's
        copy_cfg = load(copy)
        assert redis_server.ensure(copy_cfg) != server.url
        assert "stopped Blink's redis-server" in blink("stop", env=env_for(copy)).stderr
        assert server.alive()
        assert "stopped Blink's redis-server" in blink("stop", env=env_for(original)).stderr
        assert not processes.alive(server.pid)
    finally:
        redis_server.stop(cfg)
