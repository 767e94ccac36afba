"""Secure defaults for POST /v1/events (issue 12, item 7): outside dev and test the app does not
start without ``serving.ingest_token``, and a login-merge (an event's ``user_id`` joining its
session to that user, so the session drives the user's page) needs an authenticated producer."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import redis

from blink.config import Config
from blink.errors import ConfigError
from blink.keys import Keys
from blink.session_store import RedisSessions
from blink.store import MemoryStore
from contracts.dlq import DeadLetterQueue
from serving.app import create_app
from serving.event_log import EventLog
from serving.session_updater import SessionUpdater
from tests.blink.session_data import item_vector, train_encoder
from tests.tools.blink_cli import blink, env_for
from tools.redis_server import RedisServer, free_port

NOW = 1_790_000_000_000


def event(n: int, session: str, user: str | None) -> dict[str, Any]:
    return {"event_id": f"ev-{session}-{n}", "user_id": user, "session_id": session, "item_id": f"i{n}",
            "event_type": "click", "timestamp": NOW + n, "device": "mobile"}


@pytest.mark.parametrize("env", ["prod", "bench", "retail", "movielens", "staging"])
def test_outside_dev_and_test_the_app_does_not_start_without_a_token(tmp_path: Path, env: str) -> None:
    cfg = Config(env=env, paths={"var_dir": tmp_path / "var"})
    with pytest.raises(ConfigError, match="BLINK_SERVING__INGEST_TOKEN") as refused:
        create_app(cfg, MemoryStore(), start_reload=False)
    assert f"BLINK_ENV={env}" in str(refused.value) and "outside dev and test" in str(refused.value)
    with_token = Config(env=env, paths={"var_dir": tmp_path / "var"}, serving={"ingest_token": "s3cret"})
    assert create_app(with_token, MemoryStore(), start_reload=False).name == "blink"


@pytest.mark.parametrize("env", ["dev", "test"])
def test_dev_and_test_start_without_a_token(tmp_path: Path, env: str) -> None:
    assert create_app(Config(env=env, paths={"var_dir": tmp_path / "var"}), MemoryStore(), start_reload=False)


@pytest.mark.integration
def test_blink_serve_in_prod_without_a_token_fails_saying_what_to_set(tmp_path: Path,
                                                                       redis_server: RedisServer) -> None:
    env = env_for(tmp_path / "var", BLINK_ENV="prod", REDIS_URL=redis_server.url, BLINK_REDIS__KEY_PREFIX="tok")
    done = blink("serve", "--daemon", "--port", str(free_port()), env=env, timeout=180)
    try:
        assert done.returncode != 0 and "BLINK_SERVING__INGEST_TOKEN" in " ".join(done.stderr.split()), done.stderr
        assert "serving on" not in done.stderr
    finally:
        blink("stop", env=env)


class FakeModel:
    """The served model as the session updater sees it: a trained GRU and item vectors."""

    def __init__(self) -> None:
        self.session = train_encoder()

    @staticmethod
    def item_vector(item_id: str) -> Any:
        return item_vector(item_id)


@pytest.mark.integration
def test_a_login_merge_needs_an_authenticated_producer(redis_client: redis.Redis, tmp_path: Path) -> None:
    keys = Keys("merge")
    sessions = RedisSessions(redis_client, keys, ttl_s=600)
    model = FakeModel()
    log = EventLog(redis_client, keys, DeadLetterQueue(tmp_path / "dlq"),
                   on_accepted=SessionUpdater(sessions, lambda: model))
    # Not authenticated (the default): stored as sent, the session advances, the victim's page is not touched.
    assert log.accept([event(1, "attacker-s", None), event(2, "attacker-s", "victim")]).accepted == 2
    assert sessions.pointer("victim") is None
    state = sessions.get("attacker-s")
    assert state is not None and state.user_id is None and state.n == 2
    assert redis_client.xlen(log.stream) == 2  # the batch still sees who the producer said it was
    # Authenticated: the login joins the session to the user.
    log.accept([event(3, "login-s", None), event(4, "login-s", "alice")], merge_users=True)
    assert sessions.pointer("alice") == "login-s"
    assert sessions.get("login-s").user_id == "alice"  # type: ignore[union-attr]


@pytest.mark.integration
@pytest.mark.parametrize("token", [None, "s3cret"])
def test_the_api_merges_for_an_authenticated_producer_and_without_a_token_as_before(
        tmp_path: Path, redis_server: RedisServer, token: str | None) -> None:
    """A recorder stands in for the session updater, to see what the app lets it apply."""
    serving = {"ingest_token": token} if token else {}
    cfg = Config(env="test", paths={"var_dir": tmp_path / "var"}, redis={"url": redis_server.url,
                                                                            "key_prefix": f"api{bool(token)}".lower()},
                 serving=serving)
    app = create_app(cfg, start_reload=False)
    seen: list[Mapping[str, Any]] = []
    app.extensions["blink"]["events"].on_accepted = seen.extend
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = app.test_client().post("/v1/events", json=event(1, "s", "alice"), headers=headers)
    assert r.status_code == 202, r.get_json()
    assert [e["user_id"] for e in seen] == ["alice"]
