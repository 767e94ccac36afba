"""A hung Redis (SIGSTOP: the port still accepts connections, nothing answers) against the
router and the event log wired as serving wires them (serving.app.bounded_client, one shared
Redis breaker): reads answer within the deadline, events are refused with 503 at once, and
everything recovers after SIGCONT. A real redis-server, really stopped."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blink.candidates import SourceSizes
from blink.config import Config
from blink.errors import NotReady
from blink.keys import Keys
from blink.pipeline import Pipeline
from blink.session_store import RedisSessions
from blink.store import RedisStore
from contracts.dlq import DeadLetterQueue
from serving.app import bounded_client
from serving.breaker import Breaker
from serving.event_log import EventLog
from serving.registry import Registry
from serving.router import Router
from tests.serving.test_events import event
from tests.serving.test_router import small_model
from tools.redis_server import RedisServer

pytestmark = pytest.mark.integration  # a real redis-server, stopped and continued


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer.start(tmp_path / "redis", aof=False)
    yield server
    os.kill(server.pid, signal.SIGCONT)  # never leave it stopped, whatever the test did
    server.stop()


def test_a_hung_redis_costs_at_most_the_deadline(server: RedisServer, tmp_path: Path) -> None:
    cfg = Config(paths={"var_dir": tmp_path / "var"}, redis={"url": server.url, "socket_timeout_ms": 50},
                 serving={"deadline_ms": 150})
    client, keys = bounded_client(cfg), Keys("t")
    store, sessions = RedisStore(client, keys), RedisSessions(client, keys, 600)
    store.publish("v1", [("u0", [("i9", 2.0), ("i8", 1.0)])], [], {})
    registry = Registry(store, tmp_path / "artifacts", SourceSizes(ann=30))
    registry.pipeline = Pipeline(small_model(), 30)
    redis_breaker = Breaker.for_redis()
    router = Router(cfg.serving, store, registry, sessions=sessions, redis_breaker=redis_breaker)
    events = EventLog(client, keys, DeadLetterQueue(tmp_path / "dlq"), breaker=redis_breaker)
    assert router.recommend("u0", k=2).path == "head"
    assert events.accept([event(1)]).accepted == 1

    os.kill(server.pid, signal.SIGSTOP)
    answers, slowest = [], 0.0
    for user in ("u0", "u1", "stranger") * 5:
        started = time.perf_counter()
        answers.append(router.recommend(user, k=5))
        slowest = max(slowest, time.perf_counter() - started)
    # Every request answered with items: head users via the model path or the fallback.
    assert all(len(a.items) == 5 for a in answers)
    assert {a.path for a in answers} <= {"tail", "fallback"}
    assert redis_breaker.state == "open"  # after a few timeouts Redis is skipped, not waited for
    assert slowest < 1.0  # generous: the deadline is 150 ms; before the fix a request took ~12 s
    started = time.perf_counter()
    with pytest.raises(NotReady, match="retry the whole request later"):
        events.accept([event(2), {"event_id": "bad"}])
    assert time.perf_counter() - started < 0.5
    assert DeadLetterQueue(tmp_path / "dlq").count("event") == 0  # refused with 503: no letters

    os.kill(server.pid, signal.SIGCONT)
    time.sleep(1.2)  # the breaker's reset timeout: the next call is the probe
    assert router.recommend("u0", k=2).path == "head"
    assert redis_breaker.state == "closed"
    assert events.accept([event(2)]).accepted == 1
    assert redis_breaker.transitions["closed->open"] >= 1 and redis_breaker.transitions["half-open->closed"] >= 1
