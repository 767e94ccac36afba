"""The ranker gate: a ranker is served only where it beats the fused source order.

Groups are built by hand (feature rows with the source-rank columns filled in), so the tests
know which source carries the signal; the "boosters" are stand-ins with inplace_predict, the
one method the gate calls — a real XGBoost model cannot be made to rank badly on demand.
"""

from __future__ import annotations

import numpy as np

from blink.candidates import KINDS, SOURCES, fused
from blink.feature_matrix import NAMES
from jobs.ranker import SOURCE_RANKS, choose, ndcg, tune_fusion

N = 30  # candidates per group


def group(rng: np.random.Generator, signal: str) -> tuple[np.ndarray, np.ndarray]:
    """One group whose relevant items are the top of ``signal``'s ranking; the other sources
    rank the candidates at random."""
    x = np.full((N, len(NAMES)), np.nan, np.float32)
    for s in SOURCES:
        x[:, NAMES.index(f"x_src_{s}_rank")] = rng.permutation(N)
    y = np.zeros(N, np.float32)
    y[np.argsort(x[:, NAMES.index(f"x_src_{signal}_rank")])[:3]] = 1
    return x, y


class Oracle:
    """Scores the labels themselves (perfect); ``noise`` > 0 drowns them."""

    def __init__(self, groups: list[tuple[np.ndarray, np.ndarray]], noise: float = 0.0) -> None:
        self.by_row = {g[0].tobytes(): g[1] for g in groups}
        self.rng, self.noise = np.random.default_rng(1), noise

    def inplace_predict(self, x: np.ndarray) -> np.ndarray:
        return self.by_row[x.tobytes()] + self.noise * self.rng.standard_normal(len(x))


def test_ndcg_is_one_for_the_ideal_order_and_lower_otherwise() -> None:
    y = np.array([0, 2, 0, 1], np.float32)
    assert ndcg(y, y) == 1.0
    assert 0 < ndcg(-y, y) < 1
    assert ndcg(np.zeros(4), np.zeros(4)) == 0.0


def test_fusion_weights_find_the_source_that_carries_the_signal() -> None:
    rng = np.random.default_rng(0)
    groups = [group(rng, "covisit") for _ in range(40)]
    weights, best = tune_fusion(groups)
    assert weights[SOURCES.index("covisit")] > 0
    assert all(w == 0 for s, w in zip(SOURCES, weights, strict=True) if s != "covisit")
    equal = np.mean([ndcg(fused(x[:, SOURCE_RANKS], (1.0,) * len(SOURCES)), y) for x, y in groups])
    assert best > equal


def test_a_ranker_that_loses_to_the_fused_order_is_not_served() -> None:
    rng = np.random.default_rng(0)
    train = [(k, group(rng, "covisit")) for k in KINDS for _ in range(30)]
    holdout = [(k, group(rng, "covisit")) for k in KINDS for _ in range(20)]
    noisy = Oracle([g for _, g in holdout], noise=100.0)  # about random
    fusion, gate = choose(noisy, train, holdout, min_gain=0.0)
    assert fusion.ranker == {"user": False, "session": False}
    assert all(g["fused_ndcg@20"] > g["ranker_ndcg@20"] for g in gate.values())
    assert all(g["holdout_groups"] == 20 for g in gate.values())


def test_a_ranker_that_beats_the_fused_order_is_served_per_kind() -> None:
    rng = np.random.default_rng(0)
    train = [(k, group(rng, "ann")) for k in KINDS for _ in range(30)]
    # Held out: user requests follow the ANN order (fusion learns it), session requests do not.
    holdout = [("user", group(rng, "ann")) for _ in range(20)] + [("session", group(rng, "popular"))
                                                                  for _ in range(20)]
    perfect = Oracle([g for _, g in holdout])
    fusion, gate = choose(perfect, train, holdout, min_gain=0.0)
    assert fusion.ranker["session"] is True
    assert gate["user"]["ranker_ndcg@20"] == 1.0
    # The fused ANN order is already perfect for users: a tie is not a win.
    assert gate["user"]["fused_ndcg@20"] == 1.0 and fusion.ranker["user"] is False


def test_no_held_out_group_of_a_kind_means_the_fused_order() -> None:
    rng = np.random.default_rng(0)
    train = [("user", group(rng, "ann")) for _ in range(10)]
    holdout = [("user", group(rng, "ann")) for _ in range(5)]
    fusion, gate = choose(Oracle([g for _, g in holdout]), train, holdout, min_gain=0.0)
    assert fusion.ranker["session"] is False and gate["session"]["holdout_groups"] == 0
    assert fusion.weights["session"] == (1.0,) * len(SOURCES)
