"""Baselines on tiny synthetic data whose right answers are known by construction or by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from jobs.baselines import (
    ALS,
    EASE,
    CoVisitation,
    ItemKNN,
    Popularity,
    Query,
    SessionKNN,
    SkipBaseline,
    user_item_matrix,
)
from jobs.metrics import hit_at, ndcg_at, recall_at
from jobs.protocol import eval_set, evaluate, temporal_split, tune_als, tune_ease

HOUR = 3_600_000


def frame(rows: list[tuple[str, str, int]], weight: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame([(u, i, t, weight) for u, i, t in rows], columns=["user_id", "item_id", "timestamp", "weight"])


def blocks() -> pd.DataFrame:
    """Two disjoint worlds: 5 users on items A0..A4, 10 users on B0..B4 (so B is more popular).

    User u of a block consumes items u, u+1, u+2 (mod 5) in that order, one second apart, so
    its unseen block items are u+3 and u+4 and every block item co-occurs with the others.
    """
    rows = []
    for block, n_users in (("A", 5), ("B", 10)):
        for u in range(n_users):
            for step in range(3):
                rows.append((f"{block}-u{u}", f"{block}{(u + step) % 5}", 10_000 * u + 1_000 * step))
    return frame(rows)


PERSONALISED = {
    # two blocks: rank 2 can represent block membership; more factors on 15 users fit noise
    "als": lambda: ALS(factors=2, regularization=0.1, alpha=10.0, iterations=30),
    "ease": lambda: EASE(lam=1.0),
    "item_knn": lambda: ItemKNN(),
    "covis": lambda: CoVisitation(),
    "sknn": lambda: SessionKNN(),
}


# --- data ----------------------------------------------------------------------------------


def test_user_item_matrix_sums_repeats_and_maps_ids() -> None:
    m = user_item_matrix(frame([("u1", "b", 0), ("u1", "b", 1), ("u2", "a", 2)], weight=2.0))
    assert list(m.users) == ["u1", "u2"] and list(m.items) == ["a", "b"]
    assert m.matrix.toarray().tolist() == [[0.0, 4.0], [2.0, 0.0]]


def test_missing_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="weight"):
        Popularity().fit(pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "timestamp": [0]}))


# --- popularity ------------------------------------------------------------------------------


def test_popularity_ranks_by_count_and_excludes_seen() -> None:
    train = frame([("u1", "a", 0), ("u2", "a", 1), ("u3", "a", 2), ("u1", "b", 3), ("u2", "b", 4), ("u3", "c", 5)])
    pop = Popularity().fit(train)
    assert pop.recommend([Query()], 3) == [["a", "b", "c"]]
    assert pop.recommend([Query(user_id="u1")], 3) == [["c"]]  # a, b seen
    assert pop.recommend([Query(user_id="u1")], 3, exclude_seen=False) == [["a", "b", "c"]]
    assert pop.recommend([Query(history=("a", "zzz"))], 3) == [["b", "c"]]  # unknown items ignored


def test_recent_popularity_counts_only_the_window() -> None:
    day = 86_400_000
    old = [(f"u{i}", "a", 0) for i in range(5)]  # a: most popular, but 10 days before the cut
    recent = [("u1", "b", 9 * day), ("u2", "b", 9 * day), ("u3", "c", 9 * day)]
    train = frame(old + recent)
    assert Popularity(days=3).fit(train).recommend([Query()], 3) == [["b", "c", "a"]]
    assert Popularity().fit(train).recommend([Query()], 3) == [["a", "b", "c"]]
    # an explicit cut far after the data: nothing in the window, all-time order remains
    assert Popularity(days=3, as_of_ms=100 * day).fit(train).recommend([Query()], 3) == [["a", "b", "c"]]


# --- every personalised baseline stays in the user's world ----------------------------------


@pytest.mark.parametrize("name", sorted(PERSONALISED))
def test_personalised_baselines_recommend_inside_the_users_block(name: str) -> None:
    system = PERSONALISED[name]().fit(blocks())
    for block, n_users in (("A", 5), ("B", 10)):
        queries = [Query(user_id=f"{block}-u{u}") for u in range(n_users)]
        for u, recs in enumerate(system.recommend(queries, 2)):
            assert set(recs) == {f"{block}{(u + 3) % 5}", f"{block}{(u + 4) % 5}"}, (name, block, u, recs)
    # a new user after one click in the small block A must not get the more popular B items
    (recs,) = system.recommend([Query(history=("A0",))], 2)
    assert len(recs) == 2 and all(r.startswith("A") and r != "A0" for r in recs), (name, recs)


def test_popularity_is_not_personalised_on_blocks() -> None:
    # the control for the test above: popularity sends A users to B items
    (recs,) = Popularity().fit(blocks()).recommend([Query(user_id="A-u0")], 2)
    assert all(r.startswith("B") for r in recs)


# --- EASE ------------------------------------------------------------------------------------


def test_ease_weights_match_the_hand_computed_inverse() -> None:
    # X = [[1,1,0],[0,1,1]], lambda = 1: X'X + I = [[2,1,0],[1,3,1],[0,1,2]], whose inverse is
    # P = [[5,-2,1],[-2,4,-2],[1,-2,5]] / 8, and B_ij = -P_ij / P_jj off the diagonal.
    ease = EASE(lam=1.0).fit(frame([("u1", "i0", 0), ("u1", "i1", 1), ("u2", "i1", 2), ("u2", "i2", 3)]))
    expected = np.array([[0.0, 0.5, -0.2], [0.4, 0.0, 0.4], [-0.2, 0.5, 0.0]])
    np.testing.assert_allclose(ease.b, expected, atol=1e-12)
    # user u1 (i0, i1) scores i2 at B_02 + B_12 = 0.2; a new user on i0: i1 (0.5) before i2 (-0.2)
    assert ease.recommend([Query(user_id="u1")], 3) == [["i2"]]
    assert ease.recommend([Query(history=("i0",))], 2) == [["i1", "i2"]]


def test_ease_is_skipped_with_a_reason_when_items_are_too_many() -> None:
    data = frame([("u1", "i0", 0), ("u1", "i1", 1), ("u2", "i2", 2)])
    with pytest.raises(SkipBaseline, match="3 items > 2"):
        EASE(max_items=2).fit(data)
    with pytest.raises(SkipBaseline):
        tune_ease(data, val_cut_ms=1, test_cut_ms=10, max_items=2)


# --- item-kNN ---------------------------------------------------------------------------------


def knn_data() -> pd.DataFrame:
    # columns: a = {u0, u1}, b = {u0, u1, u2}, c = {u2, u3}, d = {u3}
    # cos(a,b) = 2/sqrt(6), cos(b,c) = 1/sqrt(6), cos(c,d) = 1/sqrt(2), all other pairs 0
    rows = [("u0", "a", 0), ("u0", "b", 1), ("u1", "a", 2), ("u1", "b", 3),
            ("u2", "b", 4), ("u2", "c", 5), ("u3", "c", 6), ("u3", "d", 7)]
    return frame(rows)


@pytest.mark.parametrize("block", [1, 1024])
def test_item_knn_keeps_the_top_cosine_neighbours(block: int) -> None:
    knn = ItemKNN(neighbours=2, block=block).fit(knn_data())
    s = math.sqrt(6)
    expected = np.array([
        [0, 2 / s, 0, 0],
        [2 / s, 0, 1 / s, 0],
        [0, 1 / s, 0, 1 / math.sqrt(2)],
        [0, 0, 1 / math.sqrt(2), 0],
    ])
    np.testing.assert_allclose(knn.sim.toarray(), expected, atol=1e-9)
    one = ItemKNN(neighbours=1, block=block).fit(knn_data())
    assert one.sim[1].toarray().ravel().tolist() == pytest.approx([2 / s, 0, 0, 0])  # b keeps only a


def test_item_knn_scores_sum_over_the_users_items() -> None:
    knn = ItemKNN(neighbours=2).fit(knn_data())
    # history b: a (2/sqrt6) before c (1/sqrt6); d has no link to b, so it comes by popularity last
    assert knn.recommend([Query(history=("b",))], 3) == [["a", "c", "d"]]
    # history (b, d): c gets 1/sqrt6 (via b) + 1/sqrt2 (via d) = 1.11 and overtakes a (2/sqrt6 = 0.82)
    assert knn.recommend([Query(history=("b", "d"))], 2) == [["c", "a"]]
    # with one neighbour per item, b points only at a, so c gets only 1/sqrt2 and stays behind a
    assert ItemKNN(neighbours=1).fit(knn_data()).recommend([Query(history=("b", "d"))], 2) == [["a", "c"]]


# --- co-visitation -----------------------------------------------------------------------------


def test_covisitation_counts_followers_within_steps_and_window_then_normalises() -> None:
    rows = [
        ("u1", "a", 0), ("u1", "b", 1_000), ("u1", "c", 10 * HOUR),  # c is 10 h later: outside a 1 h window
        ("u2", "a", 0), ("u2", "b", 1_000),
        ("u3", "a", 0), ("u3", "c", 1_000),
        ("u4", "x", 0), ("u4", "y", 0),  # same timestamp (one basket): counts both ways
    ]
    covis = CoVisitation(window_ms=HOUR, max_steps=2).fit(frame(rows))
    items = list(covis.data.items)
    nxt = pd.DataFrame(covis.next.toarray(), index=items, columns=items)
    assert nxt.loc["a", "b"] == pytest.approx(2 / 3) and nxt.loc["a", "c"] == pytest.approx(1 / 3)
    assert nxt.loc["b"].sum() == 0  # b -> c of u1 is outside the window
    assert nxt.loc["x", "y"] == 1.0 and nxt.loc["y", "x"] == 1.0
    assert nxt.loc["b", "a"] == 0  # no backward counting by default
    # recency weights: history (a, b) -> 0.5 * P(.|a) + 1.0 * P(.|b); only c is unseen
    assert covis.recommend([Query(history=("a",))], 2) == [["b", "c"]]
    wide = CoVisitation(window_ms=24 * HOUR, max_steps=2, backward=0.5).fit(frame(rows))
    wide_next = pd.DataFrame(wide.next.toarray(), index=items, columns=items)
    # a: b x2, c x2 (u1 at step 2 now in the window, u3); b: c (u1), a backward 0.5 x2
    assert wide_next.loc["a", "b"] == pytest.approx(0.5)
    assert wide_next.loc["b", "a"] == pytest.approx(1 / 2) and wide_next.loc["b", "c"] == pytest.approx(1 / 2)


def test_covisitation_weights_the_latest_click_most() -> None:
    rows = [("u1", "a", 0), ("u1", "p", 1_000), ("u2", "b", 0), ("u2", "q", 1_000)]
    covis = CoVisitation().fit(frame(rows))
    assert covis.recommend([Query(history=("a", "b"))], 2) == [["q", "p"]]
    assert covis.recommend([Query(history=("b", "a"))], 2) == [["p", "q"]]


# --- session-kNN --------------------------------------------------------------------------------


def sknn_data() -> pd.DataFrame:
    # sessions: s1 = {a, b, c} (u1), s2 = {a, d} (u2), s3 = {b, e} (u3), s4 = {d, f} (u4)
    rows = [("u1", "a", 0), ("u1", "b", 1), ("u1", "c", 2), ("u2", "a", 0), ("u2", "d", 1),
            ("u3", "b", 0), ("u3", "e", 1), ("u4", "d", 0), ("u4", "f", 1)]
    return frame(rows)


def test_sknn_votes_of_the_most_similar_sessions() -> None:
    # history (a, b): weights a = 1/2, b = 1 -> sim(s1) = 1.5, sim(s3) = 1.0, sim(s2) = 0.5, sim(s4) = 0
    two = SessionKNN(neighbours=2).fit(sknn_data())
    assert two.recommend([Query(history=("a", "b"))], 2) == [["c", "e"]]
    # one neighbour (s1): only c has a vote; d (2 events) is the most popular of the rest
    one = SessionKNN(neighbours=1).fit(sknn_data())
    assert one.recommend([Query(history=("a", "b"))], 2) == [["c", "d"]]
    three = SessionKNN(neighbours=3).fit(sknn_data())
    assert three.recommend([Query(history=("a", "b"))], 3) == [["c", "e", "d"]]


def test_sknn_never_uses_the_users_own_sessions() -> None:
    # u1's sequence a, b, c (weights 1/3, 2/3, 1): s3 (b) = 2/3 beats s2 (a) = 1/3. Were u1's own
    # session s1 a neighbour, it would win (sim 2) and vote only for seen items -> popularity (d).
    one = SessionKNN(neighbours=1).fit(sknn_data())
    assert one.recommend([Query(user_id="u1")], 1) == [["e"]]


def test_sknn_splits_sessions_on_gaps_and_samples_recent_ones() -> None:
    rows = [("u1", "x", 0), ("u1", "y", 10 * HOUR)]
    assert SessionKNN(session_gap_ms=HOUR).fit(frame(rows)).sessions.shape[0] == 2
    assert SessionKNN(session_gap_ms=None).fit(frame(rows)).sessions.shape[0] == 1
    # two past sessions contain a; with sample_size=1 only the most recent one (with "new") votes
    rows = [("u1", "a", 0), ("u1", "old", 1), ("u1", "old", 2), ("u2", "a", 5 * HOUR), ("u2", "new", 5 * HOUR)]
    assert SessionKNN(sample_size=1).fit(frame(rows)).recommend([Query(history=("a",))], 1) == [["new"]]
    assert SessionKNN(sample_size=2).fit(frame(rows)).recommend([Query(history=("a",))], 1) == [["old"]]


# --- evaluation -------------------------------------------------------------------------------


def test_metrics_by_hand() -> None:
    ranked, truth = ["a", "x", "b"], {"a", "b"}
    assert ndcg_at(ranked, truth, 3) == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert ndcg_at(ranked, truth, 1) == 1.0
    assert recall_at(ranked, truth, 2) == 0.5 and recall_at(ranked, truth, 3) == 1.0
    assert hit_at(ranked, {"b"}, 2) == 0.0 and hit_at(ranked, {"b"}, 3) == 1.0


def test_temporal_split_and_eval_set() -> None:
    rows = [
        ("old", "a", 0), ("old", "b", 1),  # known user: comes back with b (seen) and c
        ("old", "b", 100), ("old", "c", 101),
        ("gone", "a", 2),  # known, never comes back
        ("stale", "a", 3), ("stale", "a", 102),  # comes back only to seen items: nothing to find
        ("new", "a", 100), ("new", "b", 101), ("new", "a", 102), ("new", "d", 103),  # 4 test events
        ("late", "z", 200),  # after the horizon
    ]
    train, test = temporal_split(frame(rows), test_cut_ms=100, horizon_ms=100)
    assert set(train["user_id"]) == {"old", "gone", "stale"} and "late" not in set(test["user_id"])
    cases = eval_set(train, test, clicks=(1, 3, 5))
    assert [(c.query, c.truth) for c in cases.known] == [(Query(user_id="old"), {"c"})]
    assert [(c.query, c.truth) for c in cases.new[1]] == [(Query(history=("a",)), {"b", "d"})]
    assert [(c.query, c.truth) for c in cases.new[3]] == [(Query(history=("a", "b", "a")), {"d"})]
    assert cases.new[5] == []  # 4 events <= 5 clicks: skipped

    result = evaluate({"pop": Popularity().fit(train)}, train, test, k=2, clicks=(1, 3, 5))
    # known user "old" saw a, b: popularity offers nothing else it knows (c is new) -> 0
    assert result["pop"]["known"] == {"ndcg": 0.0, "recall": 0.0, "hr": 0.0, "users": 1}
    # new user after "a": popularity ranks b first (b: 1 event, after a: 3 events) -> hit on b
    assert result["pop"]["new@1"]["hr"] == 1.0 and result["pop"]["new@1"]["recall"] == 0.5
    assert result["pop"]["new@5"]["users"] == 0


# --- tuning -------------------------------------------------------------------------------------


def test_als_tuner_picks_from_its_grid_and_reports_every_point() -> None:
    data = blocks()
    later = data.assign(timestamp=data["timestamp"] + 1_000_000)  # everyone comes back, same items shifted
    later["item_id"] = later["item_id"].str[0] + ((later["item_id"].str[1].astype(int) + 3) % 5).astype(str)
    test_window = data.assign(timestamp=data["timestamp"] + 2_000_000)
    df = pd.concat([data, later, test_window])
    grid = {"factors": [1, 2], "regularization": [0.1], "alpha": [10.0]}
    tuned = tune_als(df, val_cut_ms=1_000_000, test_cut_ms=2_000_000, grid=grid, iterations=20)
    assert len(tuned.grid) == 2 and {row["factors"] for row in tuned.grid} == {1, 2}
    assert tuned.best["factors"] in {1, 2} and tuned.best["regularization"] == 0.1
    assert all(0.0 <= row["objective"] <= 1.0 and row["fit_seconds"] >= 0 for row in tuned.grid)
    best_row = max(tuned.grid, key=lambda row: row["objective"])
    assert tuned.best["factors"] == best_row["factors"]
    # one factor cannot give each of two blocks its own direction; two can: the tuner must see it
    assert best_row["factors"] == 2 and best_row["objective"] > min(row["objective"] for row in tuned.grid)
    assert isinstance(tuned.system, ALS) and tuned.system.factors == 2
    assert len(tuned.system.data.users) == 15  # refit on everything before the test cut
