"""Router behaviour on a small in-memory model with a real ScaNN index: every path, and
that a well-formed request always gets an answer (store outage, model errors, deadline)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from blink.candidates import SourceSizes
from blink.config import RetrievalConfig, ServingConfig
from blink.errors import BadRequest
from blink.feature_matrix import ITEM_FEATURES, USER_FEATURES
from blink.keys import Keys
from blink.model import Model
from blink.pipeline import Pipeline
from blink.retrieval import Retriever
from blink.store import MemoryStore, RedisStore
from serving.breaker import Breaker
from serving.registry import Registry
from serving.router import Router
from tools.redis_server import RedisServer

N_ITEMS = 60


def small_model() -> Model:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    users = rng.normal(size=(3, 8)).astype(np.float32)
    users[2] = np.nan  # u2 is known but has nothing to embed
    return Model(
        version="v1", as_of_ms=1_790_000_000_000, item_ids=np.array([f"i{j}" for j in range(N_ITEMS)]),
        item_vectors=vectors, item_features=np.full((N_ITEMS, len(ITEM_FEATURES)), np.nan, np.float32),
        item_category=np.zeros(N_ITEMS, np.int64), categories=["c0"], user_ids=["u0", "u1", "u2"],
        user_vectors=users, user_features=np.full((3, len(USER_FEATURES)), np.nan, np.float32),
        user_category_share=np.full((3, 2), np.nan, np.float32),
        history=[np.array([0, 1, 2]), np.array([], np.int64), np.array([], np.int64)],
        trending=[(f"i{j}", float(100 - j)) for j in range(20)],
        retriever=Retriever.build(vectors, RetrievalConfig(candidates=30)),
    )


def make_router(store: object | None = None, **serving: object) -> Router:
    store = store or MemoryStore()
    registry = Registry(store, Path("/nonexistent"), SourceSizes(ann=30))  # type: ignore[arg-type]
    registry.pipeline = Pipeline(small_model(), 30)
    return Router(ServingConfig(**serving), store, registry, Breaker("model", fail_max=3, reset_timeout_s=60))  # type: ignore[arg-type]


def test_head_path_reads_the_precomputed_list() -> None:
    store = MemoryStore()
    store.publish("v1", [("u0", [("i9", 2.0), ("i8", 1.0)])], [], {})
    answer = make_router(store).recommend("u0", k=1)
    assert answer.path == "head" and [i["item_id"] for i in answer.items] == ["i9"]


def test_tail_path_filters_consumed_items() -> None:
    answer = make_router().recommend("u0", k=20)
    assert answer.path == "tail" and len(answer.items) == 20
    assert not {"i0", "i1", "i2"} & {i["item_id"] for i in answer.items}
    assert set(answer.stages_ms) >= {"store_read", "retrieval", "ranking"}


def test_unknown_and_unembeddable_users_get_trending_minus_consumed() -> None:
    router = make_router()
    for user in ("stranger", "u2"):
        answer = router.recommend(user, k=5)
        assert answer.path == "fallback" and answer.reason == "no history for this user"
        assert [i["item_id"] for i in answer.items] == ["i0", "i1", "i2", "i3", "i4"]


def test_bad_requests_raise_bad_request() -> None:
    router = make_router()
    for user, k in (("", 5), ("u\x07", 5), ("x" * 200, 5), ("u0", 0), ("u0", 101)):
        with pytest.raises(BadRequest):
            router.recommend(user, k=k)
    with pytest.raises(BadRequest, match="device"):
        router.recommend("u0", k=5, device="fridge")


@pytest.mark.integration
def test_store_outage_still_answers(tmp_path: Path) -> None:
    """A real Redis that goes away mid-life: head lookups fail, answers keep coming."""
    server = RedisServer.start(tmp_path, aof=False)
    client = redis.Redis(port=server.port, socket_timeout=0.05, socket_connect_timeout=0.05,
                         retry=Retry(NoBackoff(), 0))  # as serving's client (serving.app.bounded_client)
    store = RedisStore(client, Keys("t"))
    store.publish("v1", [("u0", [("i9", 2.0)])], [], {})
    router = make_router(store)
    assert router.recommend("u0", k=1).path == "head"
    server.stop()
    answer = router.recommend("u0", k=5)
    assert answer.path == "tail" and len(answer.items) == 5
    assert router.recommend("stranger", k=3).path == "fallback"


class FailingRanker:
    """Injected fault (a ranker that raises): a real model cannot be made to fail on demand."""

    calls = 0

    def inplace_predict(self, x: np.ndarray) -> np.ndarray:
        FailingRanker.calls += 1
        raise RuntimeError("ranker exploded")


def test_model_errors_fall_back_then_the_breaker_opens() -> None:
    router = make_router()
    assert router.registry.pipeline is not None
    router.registry.pipeline.model.booster = FailingRanker()
    reasons = [router.recommend("u1", k=5).reason for _ in range(5)]
    assert all(r and r.startswith("model path failed: ranker exploded") for r in reasons[:3])
    # the third failure trips the breaker; the calls after it do not try the model path
    assert reasons[3:] == ["circuit open"] * 2
    assert FailingRanker.calls == 3  # open breaker: the model path is not even tried
    assert router.breaker.state == "open"


def test_deadline_turns_a_slow_answer_into_the_fallback() -> None:
    answer = make_router(deadline_ms=1e-6).recommend("u1", k=5)
    assert answer.path == "fallback" and "deadline" in (answer.reason or "")
    assert len(answer.items) == 5


class StuckRanker:
    """Injected fault: a ranking stage that blocks far past any deadline (a real model cannot be
    made to hang on demand). ``release`` lets the abandoned threads finish at the end of the test."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def inplace_predict(self, x: np.ndarray) -> np.ndarray:
        self.started += 1
        self.release.wait(timeout=30)
        return np.zeros(len(x), np.float32)


def test_hard_deadline_answers_from_the_fallback_while_a_stage_hangs(caplog: pytest.LogCaptureFixture) -> None:
    router = make_router(deadline_ms=50)
    assert router.registry.pipeline is not None
    stuck = StuckRanker()
    router.registry.pipeline.model.booster = stuck
    try:
        with caplog.at_level(logging.INFO, logger="serving.breaker"):
            answers = [router.recommend("u1", k=5) for _ in range(4)]
        for answer in answers[:3]:
            assert (answer.path, answer.reason, len(answer.items)) == ("fallback", "deadline", 5)
            # it arrived although the stage is still blocked; a generous bound (deadline 50 ms)
            assert answer.latency_ms < 1000
        assert stuck.started == 3  # three model paths were started and abandoned
        # the breaker counted the three blown deadlines, opened, logged and counted the change
        assert answers[3].reason == "circuit open" and router.breaker.state == "open"
        assert router.breaker.transitions["closed->open"] == 1
        assert any("breaker model: closed -> open" in r.getMessage() for r in caplog.records)
    finally:
        stuck.release.set()


def test_hard_deadline_refuses_at_once_when_every_model_thread_is_stuck() -> None:
    """Late work keeps its thread (Python cannot interrupt a stage); the pool is bounded and a
    request that finds it full answers from the fallback without queueing behind it."""
    router = make_router(deadline_ms=30)
    router.breaker = Breaker("model", fail_max=100, reset_timeout_s=60)  # keep trying the model path
    assert router.registry.pipeline is not None
    stuck = StuckRanker()
    router.registry.pipeline.model.booster = stuck
    try:
        answers = [router.recommend("u1", k=5) for _ in range(router.hard_deadline.threads + 2)]
        assert all(a.reason == "deadline" and len(a.items) == 5 for a in answers)
        assert stuck.started == router.hard_deadline.threads  # the extra requests never queued
    finally:
        stuck.release.set()


def test_the_redis_breaker_counts_redis_errors_only() -> None:
    """A bad value read from Redis is a bug to see, not an outage to hide behind an open breaker."""
    breaker = Breaker.for_redis()

    def corrupt() -> None:
        raise ValueError("not JSON")

    def down() -> None:
        raise redis.TimeoutError("Timeout reading from socket")

    for _ in range(5):
        with pytest.raises(ValueError):
            breaker.call(corrupt)
    assert breaker.state == "closed"
    for _ in range(3):
        with pytest.raises(redis.TimeoutError):
            breaker.call(down)
    assert breaker.state == "open" and breaker.transitions == {"closed->open": 1}
