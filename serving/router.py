"""The router: picks the path for each request and always returns an answer.

head     -- a precomputed list for this model version exists: one Redis read.
tail     -- a known user without one: ScaNN retrieval + XGBoost ranking, under a deadline
            and a circuit breaker.
fallback -- nothing personal is possible, the model path failed or ran late, or the
            breaker is open: trending items (held in process, so no store is needed).
Items the user already consumed are filtered on every path.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from blink.config import ServingConfig
from blink.errors import BadRequest
from blink.features import DEVICES, Context
from blink.pipeline import Scored
from blink.store import RecStore
from serving.breaker import Deadline, ModelBreaker
from serving.registry import Registry

log = logging.getLogger(__name__)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
                 breaker: ModelBreaker | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.registry = registry
        self.breaker = breaker or ModelBreaker()

    def check_id(self, value: str, what: str = "user_id") -> str:
        if not value or len(value) > self.cfg.max_id_length or _CONTROL.search(value) or value != value.strip():
            raise BadRequest(f"{what} must be 1-{self.cfg.max_id_length} characters without control "
                             f"characters or surrounding spaces; got {value[:40]!r}")
        return value

    def check_k(self, k: int | None) -> int:
        k = self.cfg.default_k if k is None else k
        if not 1 <= k <= self.cfg.max_k:
            raise BadRequest(f"k must be between 1 and {self.cfg.max_k}; got {k}")
        return k

    def recommend(self, user_id: str, k: int | None = None, device: str | None = None,
                  now_ms: int | None = None) -> Answer:
        started = time.perf_counter()
        self.check_id(user_id)
        k = self.check_k(k)
        if device is not None and device not in (*DEVICES, "unknown"):
            raise BadRequest(f"device must be one of {', '.join((*DEVICES, 'unknown'))}; got {device!r}")
        answer = self._route(user_id, k, Context(now_ms or int(time.time() * 1000), device))
        answer.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        return answer

    def _route(self, user_id: str, k: int, ctx: Context) -> Answer:
        pipe = self.registry.pipeline
        if pipe is None:
            return Answer(user_id, [], "fallback", None, reason="no model version published yet")
        version = pipe.model.version
        stages: dict[str, float] = {}
        t = time.perf_counter()
        try:
            cached = self.store.head_list(version, user_id)
        except Exception as exc:  # noqa: BLE001 - a store outage degrades to the model path
            log.warning("store read failed: %s", exc)
            cached = None
        stages["store_read"] = _ms(t)
        if cached is not None:
            return Answer(user_id, _items(cached[:k]), "head", version, stages_ms=stages)
        if pipe.user_position(user_id) is None:
            return self._fallback(user_id, k, version, "no history for this user", stages)
        clock = StageClock(Deadline(self.cfg.deadline_ms), stages)
        try:
            items = self.breaker.call(lambda: pipe.recommend(user_id, k, ctx, after_stage=clock))
        except Exception as exc:  # noqa: BLE001 - any model-path failure becomes the fallback
            reason = "circuit open" if self.breaker.is_open(exc) else f"model path failed: {exc}"
            return self._fallback(user_id, k, version, reason, stages)
        return Answer(user_id, _items(items or []), "tail", version, stages_ms=stages)

    def _fallback(self, user_id: str, k: int, version: str, reason: str,
                  stages: dict[str, float]) -> Answer:
        pipe = self.registry.pipeline
        assert pipe is not None
        pos = pipe.model.user_index.get(user_id)
        seen = [str(pipe.model.item_ids[j]) for j in pipe.model.history[pos]] if pos is not None else []
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


def _items(scored: Scored) -> list[dict[str, Any]]:
    return [{"item_id": i, "score": round(s, 6)} for i, s in scored]


def _ms(t: float) -> float:
    return round((time.perf_counter() - t) * 1000, 3)
