"""Blink as a baseline-protocol system, and the gate against the best baseline."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from blink.candidates import SourceSizes
from blink.config import Config
from blink.feature_matrix import Context
from blink.pipeline import Pipeline
from blink.session import SessionEncoder
from jobs.baselines import Query
from jobs.head_to_head import SYSTEM, BlinkSystem, gate
from tests.serving.test_router import small_model

SIZES = SourceSizes(ann=30, covisit=0, popular=10)


def encoder(dim: int = 8, hidden: int = 4) -> SessionEncoder:
    rng = np.random.default_rng(1)

    def w(*shape: int) -> np.ndarray:
        return rng.normal(scale=0.5, size=shape).astype(np.float32)

    return SessionEncoder(w(3 * hidden, dim), w(3 * hidden, hidden), w(3 * hidden), w(3 * hidden), w(dim, hidden),
                          w(dim), version="gru-1")


def test_known_users_get_the_pipelines_answer_and_strangers_get_trending() -> None:
    model = small_model()
    blink = BlinkSystem(model, SIZES, now_ms=model.as_of_ms, blend=0.6)
    tail = Pipeline(model, sizes=SIZES).recommend("u0", 10, Context(now_ms=model.as_of_ms))
    assert blink.recommend([Query(user_id="u0")], 10) == [[i for i, _ in tail or []]]
    assert not {"i0", "i1", "i2"} & set(blink.recommend([Query(user_id="u0")], 20)[0])  # u0's history
    # Unknown, and known with nothing to embed: the router's fallback, trending minus consumed.
    assert blink.recommend([Query(user_id="nobody"), Query(user_id="u2")], 5) == [
        [f"i{j}" for j in range(5)], [f"i{j}" for j in range(5)]]


def test_new_users_clicks_are_replayed_as_a_live_session() -> None:
    model = replace(small_model(), session=encoder())
    blink = BlinkSystem(model, SIZES, now_ms=model.as_of_ms, blend=0.6)
    clicks_a, clicks_b = ("i40", "i41", "i42"), ("i50", "i51", "i52")
    a, b = blink.recommend([Query(history=clicks_a), Query(history=clicks_b)], 10)
    assert len(a) == len(b) == 10
    assert not set(a) & set(clicks_a) and not set(b) & set(clicks_b)  # clicked items are never recommended
    assert a != b  # the clicks steer the answer
    assert a != [f"i{j}" for j in range(10)]  # ... away from plain trending
    # Without a session model the clicks still seed the candidates and are excluded.
    plain = BlinkSystem(small_model(), SIZES, now_ms=0, blend=0.6).recommend([Query(history=clicks_a)], 10)[0]
    assert len(plain) == 10 and not set(plain) & set(clicks_a)


def result(blink: float, baselines: dict[str, float], users: int = 50) -> dict[str, object]:
    table = {SYSTEM: {"known": {"ndcg": blink, "users": users}}}
    table.update({name: {"known": {"ndcg": v, "users": users}} for name, v in baselines.items()})
    best = max(baselines, key=lambda n: baselines[n]) if baselines else None
    return {"table": table, "best_baseline": {"known": best}}


@pytest.mark.parametrize(("blink", "passed"), [(0.20, True), (0.191, True), (0.189, False), (0.05, False)])
@pytest.mark.parametrize("mode", ["block", "warn"])
def test_gate_compares_with_the_best_baseline_less_the_tolerance(blink: float, passed: bool, mode: str) -> None:
    cfg = Config.model_validate({"eval": {"baseline_gate": mode}})  # tolerance 0.05: floor 0.2 * 0.95 = 0.19
    verdict = gate(cfg, result(blink, {"popularity_all": 0.1, "ease": 0.2, "als_tuned": 0.15}))
    assert verdict["passed"] is passed and verdict["best"] == "ease"
    failed = "NOT PUBLISHED: " if mode == "block" else "BELOW BASELINE: "
    assert verdict["reason"].startswith("ok: " if passed else failed) and "ease 0.2000" in verdict["reason"]


def test_gate_passes_when_there_is_nothing_to_compare() -> None:
    assert gate(Config(), result(0.0, {}))["passed"]
    assert gate(Config(), result(0.0, {"ease": 0.3}, users=0))["passed"]
