"""The router: picks the path for each request and always returns an answer.

head     -- a precomputed list for this model version exists and the user has no live
            session: one Redis read (MGET of the list and the user's session pointer).
session  -- the user (known, new or anonymous) has a live session: its GRU vector, blended
            into a known user's long-term vector, drives retrieval + ranking.
tail     -- a known user without a head list: ScaNN retrieval + XGBoost ranking, under a
            deadline and a circuit breaker.
fallback -- nothing personal is possible, the model path failed or ran late, or the
            breaker is open: trending items (held in process, so no store is needed).
Items the user already consumed are filtered on every path.

The deadline is hard: the model path (tail and session) runs on a small thread pool and the
request waits for it only until ``serving.deadline_ms`` from its start; then it answers from
the fallback with reason "deadline" and the late work is abandoned. Redis reads go through
their own breaker (a hung Redis costs one socket timeout a few times, then it is skipped).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from blink.config import ServingConfig
from blink.errors import BadRequest, DeadlineExceeded, NotFound, NotReady
from blink.feature_matrix import DEVICES, Context
from blink.pipeline import Scored
from blink.session_store import SessionState
from blink.store import RecStore
from contracts.ids import id_problem
from serving import metrics
from serving.breaker import Breaker, Deadline, HardDeadline
from serving.registry import Registry

log = logging.getLogger(__name__)
# The ?device= values a request may name (the document's enum for it too); "unknown" is the feature's NaN.
REQUEST_DEVICES = (*DEVICES, "unknown")


@dataclass
class Answer:
    user_id: str
    items: list[dict[str, Any]]
    path: str
    model_version: str | None
    reason: str | None = None
    latency_ms: float = 0.0
    stages_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Router:
    def __init__(self, cfg: ServingConfig, store: RecStore, registry: Registry,
                 breaker: Breaker | None = None, sessions: Any = None, blend: float = 0.6,
                 redis_breaker: Breaker | None = None, model_threads: int = 4) -> None:
        self.cfg = cfg
        self.store = store
        self.registry = registry
        self.breaker = breaker or Breaker("model")
        self.redis = redis_breaker or Breaker.for_redis()
        self.hard_deadline = HardDeadline(model_threads)
        self.sessions = sessions  # RedisSessions / MemorySessions, or None: no session path
        self.blend = blend

    def check_id(self, value: str, what: str = "user_id") -> str:
        """``value`` if it is a valid id by the data contract's rule, else ``BadRequest``."""
        problem = id_problem(value)  # the contract's rule: the API accepts exactly the ids the data does
        if problem:
            raise BadRequest(f"{what}: {problem}; got {value[:40]!r}")
        return value

    def check_k(self, k: int | None) -> int:
        k = self.cfg.default_k if k is None else k
        if not 1 <= k <= self.cfg.max_k:
            raise BadRequest(f"k must be between 1 and {self.cfg.max_k}; got {k}")
        return k

    def recommend(self, user_id: str, k: int | None = None, device: str | None = None,
                  now_ms: int | None = None, session_id: str | None = None) -> Answer:
        started = time.perf_counter()
        deadline = Deadline(self.cfg.deadline_ms)  # the whole request's budget, store reads included
        self.check_id(user_id)
        if session_id is not None:
            self.check_id(session_id, "session_id")
        k = self.check_k(k)
        if device is not None and device not in REQUEST_DEVICES:
            raise BadRequest(f"device must be one of {', '.join(REQUEST_DEVICES)}; got {device!r}")
        answer = self._route(user_id, k, Context(now_ms or int(time.time() * 1000), device), session_id, deadline)
        answer.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        return answer

    def _route(self, user_id: str, k: int, ctx: Context, session_id: str | None, deadline: Deadline) -> Answer:
        pipe = self.registry.pipeline
        if pipe is None:
            shipped = self.registry.trending  # no version loads: its trending list, if one reads
            if shipped is None:
                return Answer(user_id, [], "fallback", None, reason="no model version published yet")
            return Answer(user_id, _items(shipped[1][:k]), "fallback", None,
                          reason=f"no model version loads: trending of {shipped[0]}")
        version = pipe.model.version
        stages: dict[str, float] = {}
        t = time.perf_counter()
        try:
            cached, pointer = self.redis.call(lambda: self.store.head_and_session(version, user_id))
        except Exception as exc:  # noqa: BLE001 - a store outage degrades to the model path
            _log_store_failure("store read", exc)
            cached, pointer = None, None
        state = self._session(session_id or pointer)
        stages["store_read"] = _ms(t)
        consumed = state.items if state else []
        session_vec = pipe.session_vector(state)
        live = session_vec is not None
        if cached is not None and not live:
            skip = set(consumed)
            kept = [(i, s) for i, s in cached if i not in skip][:k]
            return Answer(user_id, _items(kept), "head", version, stages_ms=stages)
        if not live and pipe.user_position(user_id) is None:
            return self._fallback(user_id, k, version, "no history for this user", stages, consumed)
        model_stages: dict[str, float] = {}  # written by the model thread, copied once it is done
        clock = StageClock(deadline, model_stages)

        def model_path() -> Scored | None:
            return pipe.recommend(user_id, k, ctx, exclude=consumed, after_stage=clock, session=session_vec,
                                  blend=self.blend, session_items=consumed)

        try:
            items = self.breaker.call(lambda: self.hard_deadline.run(model_path, deadline))
        except Exception as exc:  # noqa: BLE001 - any model-path failure becomes the fallback
            if self.breaker.is_open(exc):
                reason = "circuit open"
            elif isinstance(exc, DeadlineExceeded):
                reason = "deadline"
            else:
                reason = f"model path failed: {exc}"
            return self._fallback(user_id, k, version, reason, stages, consumed)
        stages.update(model_stages)
        return Answer(user_id, _items(items or []), "session" if live else "tail", version, stages_ms=stages)

    def trending(self, k: int | None = None) -> dict[str, Any]:
        """The served version's trending list ("Popular now"), the same one the fallback uses."""
        k = self.check_k(k)
        pipe = self.registry.pipeline
        if pipe is not None:
            return {"items": _items(pipe.trending(k)), "model_version": pipe.model.version, "path": "trending"}
        shipped = self.registry.trending  # no version loads: the newest readable trending list
        return {"items": _items(shipped[1][:k]) if shipped else [], "model_version": None, "path": "trending"}

    def history_size(self, user_id: str) -> int:
        """How many items the user consumed before the served version's cut-off (0: unknown)."""
        pipe = self.registry.pipeline
        pos = pipe.model.user_index.get(user_id) if pipe is not None else None
        return 0 if pipe is None or pos is None else len(pipe.model.history[pos])

    def _session(self, session_id: str | None) -> SessionState | None:
        if not session_id or self.sessions is None:
            return None
        try:
            return self.redis.call(lambda: self.sessions.get(session_id))  # type: ignore[no-any-return]
        except Exception as exc:  # noqa: BLE001 - no session state is a degraded answer, not an error
            _log_store_failure("session read", exc)
            return None

    def similar(self, item_id: str, k: int | None = None) -> dict[str, Any]:
        """Similar items: precomputed for head items, computed in real time for the rest."""
        self.check_id(item_id, "item_id")
        k = self.check_k(k)
        pipe = self.registry.pipeline
        if pipe is None:
            raise NotReady("no model version published yet")
        try:
            cached = self.redis.call(lambda: self.store.similar(pipe.model.version, item_id))
        except Exception as exc:  # noqa: BLE001 - compute it instead
            _log_store_failure("similar-items read", exc)
            cached = None
        path, items = ("precomputed", cached[:k]) if cached is not None else ("realtime", pipe.similar(item_id, k))
        if items is None:
            raise NotFound(f"item {item_id!r} is not in model version {pipe.model.version}")
        return {"item_id": item_id, "items": _items(items), "path": path, "model_version": pipe.model.version}

    def _fallback(self, user_id: str, k: int, version: str, reason: str,
                  stages: dict[str, float], consumed: list[str] | None = None) -> Answer:
        pipe = self.registry.pipeline
        if pipe is None:  # callers only fall back once a version is loaded
            return Answer(user_id, [], "fallback", version, reason=reason, stages_ms=stages)
        seen = pipe.model.consumed(user_id) + (consumed or [])
        return Answer(user_id, _items(pipe.trending(k, exclude=seen)), "fallback", version,
                      reason=reason, stages_ms=stages)


class StageClock:
    """Records each stage's duration and enforces the request deadline between stages."""

    def __init__(self, deadline: Deadline, stages: dict[str, float]) -> None:
        self.deadline = deadline
        self.stages = stages
        self.last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        self.stages[stage] = _ms(self.last)
        self.last = time.perf_counter()
        self.deadline.check(stage)


def _log_store_failure(what: str, exc: Exception) -> None:
    """A skipped read (breaker open) is expected and quiet; a failed one is a warning."""
    if Breaker.is_open(exc):
        log.debug("%s skipped: the redis breaker is open", what)
    else:
        metrics.REDIS_ERRORS.inc()
        log.warning("%s failed: %s", what, exc)


def _items(scored: Scored) -> list[dict[str, Any]]:
    return [{"item_id": i, "score": round(s, 6)} for i, s in scored]


def _ms(t: float) -> float:
    return round((time.perf_counter() - t) * 1000, 3)
