"""Multi-source candidates: every source contributes, keeps its ranks, and can be told apart."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from blink.candidates import SOURCES, Candidates, CoVisitTable, SourceSizes, gather
from blink.feature_matrix import NAMES, Context
from blink.model import Model
from blink.pipeline import Pipeline
from tests.serving.test_router import N_ITEMS, small_model


def model_with_sources() -> Model:
    """small_model (60 items, trending i0..i19) plus co-visitation: i40 -> i41 (0.9), i42 (0.5); i41 -> i43;
    and histories for session-kNN: u2 took i40, i41, i55, i56 (u0 keeps i0..i2)."""
    table = CoVisitTable.from_lists(N_ITEMS, {40: (np.array([41, 42]), np.array([0.9, 0.5], np.float32)),
                                              41: (np.array([43, 40]), np.array([0.7, 0.2], np.float32))})
    model = small_model()
    history = [model.history[0], np.empty(0, np.int64), np.array([40, 41, 55, 56])]
    return replace(model, covisit=table, retriever=None, history=history, item_users=None)


def ranks(c: Candidates, source: str) -> dict[int, float]:
    col = NAMES.index(f"x_src_{source}_rank") - NAMES.index("x_src_ann_rank")
    return {int(p): float(c.sources[j, col]) for j, p in enumerate(c.positions) if c.proposed_by(source)[j]}


def test_each_source_proposes_its_own_items_with_their_ranks() -> None:
    model = model_with_sources()
    vector = model.user_vectors[0]
    c = gather(model, vector, recent=np.array([40, 41]), exclude=np.array([0]), sizes=SourceSizes(5, 10, 3),
               retriever=None)
    ann = np.argsort(-(model.item_vectors @ vector), kind="stable")
    assert ranks(c, "ann") == {int(p): float(r) for r, p in enumerate([p for p in ann if p != 0][:5])}
    # i41 was recently seen, so not proposed; i43 = 0.7 / 2, i42 = 0.5, recency-weighted; i40 is recent too.
    assert ranks(c, "covisit") == {42: 0.0, 43: 1.0}
    assert ranks(c, "popular") == {1: 0.0, 2: 1.0, 3: 2.0}  # trending minus the excluded i0
    assert ranks(c, "sknn") == {55: 0.0, 56: 1.0}  # u2 shares both recent items and votes for the rest
    assert 0 not in c.positions.tolist() and len(set(c.positions.tolist())) == len(c.positions)
    count = c.sources[:, NAMES.index("x_src_count") - NAMES.index("x_src_ann_rank")]
    expected = sum(np.isin(c.positions, list(ranks(c, s))).astype(int) for s in SOURCES)
    assert np.array_equal(count, expected)
    # Ordered by the query-vector score, which is also what `scores` holds.
    assert np.allclose(c.scores, model.item_vectors[c.positions] @ vector) and np.all(np.diff(c.scores) <= 1e-6)


@pytest.mark.parametrize("dropped", SOURCES)
def test_dropping_a_source_removes_exactly_its_items(dropped: str) -> None:
    model = model_with_sources()
    sizes = SourceSizes(5, 10, 3)
    full = gather(model, model.user_vectors[1], np.array([40]), np.empty(0, np.int64), sizes, None)
    less = gather(model, model.user_vectors[1], np.array([40]), np.empty(0, np.int64),
                  replace(sizes, **{dropped: 0}), None)
    only_dropped = set(ranks(full, dropped)) - {p for s in SOURCES if s != dropped for p in ranks(full, s)}
    assert only_dropped, f"the fixture should give {dropped} items no other source has"
    assert set(full.positions.tolist()) - set(less.positions.tolist()) == only_dropped
    assert not ranks(less, dropped)


def test_a_new_visitors_clicks_reach_the_answer_through_co_visitation() -> None:
    """No user vector, no session vector: the clicks alone still seed candidates beyond trending."""
    pipe = Pipeline(model_with_sources(), sizes=SourceSizes(5, 10, 3))
    answer = pipe.recommend("visitor", 5, Context(now_ms=0), exclude=["i40"], session_items=["i40"])
    assert answer is not None and {"i41", "i42"} <= {i for i, _ in answer}
    assert "i40" not in {i for i, _ in answer}
    assert pipe.recommend("visitor", 5, Context(now_ms=0)) is None  # nothing at all: the router's fallback


class CappedIndex:
    """Stands in for a tree index, which answers at most its reorder budget (here 10 items) —
    a real ScaNN tree needs a catalogue far larger than this test's to show it."""

    def __init__(self, model: Model) -> None:
        self.vectors = model.item_vectors

    def search(self, vector: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(-(self.vectors @ vector), kind="stable")[:min(n, 10)]
        return order, (self.vectors @ vector)[order]


@pytest.mark.parametrize("index", [None, "capped"])
def test_a_user_who_consumed_most_of_the_catalogue_still_gets_n_neighbours(index: str | None) -> None:
    """Online Retail's wholesalers bought thousands of products: their lists must not come up short."""
    model = small_model()
    vector = model.user_vectors[0]
    exact = np.argsort(-(model.item_vectors @ vector), kind="stable")
    consumed = exact[:45]  # the 45 nearest items are all consumed
    retriever = CappedIndex(model) if index else None
    c = gather(model, vector, np.empty(0, np.int64), consumed, SourceSizes(10, 0, 0), retriever)  # type: ignore[arg-type]
    assert list(c.only("ann").positions) == list(exact[45:55])


class ReversedRanker:
    """A stand-in booster that scores the candidates in reverse row order."""

    def inplace_predict(self, x: np.ndarray) -> np.ndarray:
        return np.arange(len(x), dtype=np.float32)


def test_the_fused_order_is_served_where_the_gate_refused_the_ranker() -> None:
    from blink.candidates import Fusion, fused

    ctx = Context(now_ms=1_790_000_000_000)
    weights = {"user": (0.0, 0.0, 1.0, 0.0), "session": (1.0, 1.0, 1.0, 1.0)}  # users: trending order only
    refused = replace(model_with_sources(), booster=ReversedRanker(),
                      fusion=Fusion(weights, {"user": False, "session": True}))
    pipe = Pipeline(refused, sizes=SourceSizes(5, 10, 3))
    assert [i for i, _ in pipe.recommend("u1", 3, ctx) or []] == ["i0", "i1", "i2"]  # trending, not reversed
    q = pipe.query("u1")
    assert q is not None
    cands = pipe.candidates_for(q)
    expected = fused(cands.sources[:, [NAMES.index(f"x_src_{s}_rank") - NAMES.index("x_src_ann_rank")
                                       for s in SOURCES]], weights["user"])
    np.testing.assert_array_equal(pipe.rank(q, cands, ctx), expected)
    # Session requests of the same version go through the ranker.
    anon = pipe.query(None, session=refused.item_vectors[5])
    assert anon is not None
    np.testing.assert_array_equal(pipe.rank(anon, pipe.candidates_for(anon), ctx),
                                  np.arange(len(pipe.candidates_for(anon).positions), dtype=np.float32))
