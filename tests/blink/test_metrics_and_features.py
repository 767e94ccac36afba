import math
from pathlib import Path

import numpy as np

from blink import feature_matrix as features
from blink.config import ROOT
from blink.feature_matrix import ITEM_INDEX, NAMES, USER_INDEX, Context, feature_matrix
from blink.model import Model
from jobs.metrics import mrr_at, ndcg_at, recall_at

SATURDAY_NOON = 1_772_625_600_000 + 3 * features.DAY_MS  # 2026-03-07 12:00 UTC


def test_metrics_on_known_lists() -> None:
    ranked = ["a", "b", "c", "d"]
    assert recall_at(ranked, {"b", "z"}, 2) == 0.5
    assert mrr_at(ranked, {"c"}, 4) == 1 / 3
    assert ndcg_at(ranked, {"a"}, 4) == 1.0
    assert math.isclose(ndcg_at(ranked, {"b"}, 4), 1 / math.log2(3))
    assert ndcg_at(ranked, {"z"}, 4) == 0.0


def test_registry_names_are_unique_and_grouped() -> None:
    assert len(features.NAMES) == len(set(features.NAMES)) >= 100
    groups = [f.group for f in features.RANKING_FEATURES]
    assert set(groups) == {"user", "item", "user_item", "session", "source", "context"}
    # Groups are contiguous, in the order feature_matrix stacks them.
    assert [g for j, g in enumerate(groups) if j == 0 or groups[j - 1] != g] == \
           ["user", "item", "user_item", "session", "source", "context"]
    assert all(f.description for f in features.RANKING_FEATURES)


def test_docs_feature_table_is_up_to_date() -> None:
    docs = Path(ROOT) / "docs" / "features.md"
    assert docs.read_text() == features.markdown(), "run: python -m blink.feature_matrix > docs/features.md"


def test_context_is_cyclical_and_device_missing_is_nan() -> None:
    device = slice(5, 9)
    midnight = features.context_row(Context(now_ms=0))
    just_before = features.context_row(Context(now_ms=24 * 3_600_000 - 1))
    assert np.allclose(midnight[:2], just_before[:2], atol=1e-3)  # 23:59 is next to 00:00
    assert np.isnan(midnight[device]).all()
    mobile = features.context_row(Context(now_ms=0, device="mobile"))
    assert list(mobile[device]) == [0.0, 1.0, 0.0, 0.0]
    weekend = NAMES.index("c_is_weekend") - NAMES.index("c_hour_sin")
    assert midnight[weekend] == 0.0  # 1970-01-01 was a Thursday
    assert features.context_row(Context(now_ms=SATURDAY_NOON))[weekend] == 1.0
    assert features.day_part(SATURDAY_NOON) == 2  # afternoon


def small_model() -> Model:
    """Four items in two categories (the last one unknown), two users with hand-set features."""
    n_items = 4
    items = np.full((n_items, len(features.ITEM_FEATURES)), np.nan, np.float32)
    items[:, ITEM_INDEX["i_price"]] = [10.0, 20.0, 0.0, 40.0]
    items[:, ITEM_INDEX["i_events_7d"]] = [5, 50, 7, 1]
    items[:, ITEM_INDEX["i_events_1d"]] = [1, 0, 3, 2]
    items[:, ITEM_INDEX["i_category_share_7d"]] = [0.5, 0.25, 0.5, np.nan]
    users = np.full((2, len(features.USER_FEATURES)), np.nan, np.float32)
    users[0, USER_INDEX["u_mean_price"]] = 20.0
    users[0, USER_INDEX["u_max_price"]] = 40.0
    users[0, USER_INDEX["u_share_mobile"]] = 0.75
    users[0, USER_INDEX["u_share_afternoon"]] = 0.4
    return Model(
        version="v1", as_of_ms=SATURDAY_NOON, item_ids=np.array([f"i{j}" for j in range(n_items)]),
        item_vectors=np.eye(n_items, 3, dtype=np.float32), item_features=items,
        item_category=np.array([0, 1, 0, 2]), categories=["c0", "c1"], user_ids=["u0", "u1"],
        user_vectors=np.ones((2, 3), np.float32), user_features=users,
        user_category_share=np.array([[0.2, 0.8, np.nan], [0.0, 0.0, np.nan]], np.float32),
        user_category_hours=np.array([[3.0, np.nan, np.nan], [np.nan, np.nan, np.nan]], np.float32),
        history=[np.array([], np.int64)] * 2, trending=[],
    )


def column(x: np.ndarray, name: str) -> list[float]:
    return [float(v) for v in x[:, NAMES.index(name)]]


def test_feature_matrix_cross_features_and_explicit_missing_values() -> None:
    model = small_model()
    cands, scores = np.array([1, 0, 2, 3]), np.array([0.9, 0.5, 0.4, 0.1], np.float32)
    x = feature_matrix(model, 0, cands, scores, Context(now_ms=SATURDAY_NOON, device="mobile"))
    assert x.shape == (4, len(NAMES)) and x.dtype == np.float32
    assert column(x, "x_retrieval_rank") == [0, 1, 2, 3]
    assert np.allclose(column(x, "x_score_minus_top"), [0.0, -0.4, -0.5, -0.8])
    assert np.allclose(column(x, "x_category_affinity")[:3], [0.8, 0.2, 0.2])
    assert np.allclose(column(x, "x_category_lift")[:3], [3.2, 0.4, 0.4])
    assert column(x, "x_in_top_category")[:3] == [1.0, 0.0, 0.0]
    # Of the (up to 10) best candidates, one is in c1, two in c0, one in an unknown category.
    assert column(x, "x_query_category_share")[:3] == [0.25, 0.5, 0.5]
    assert column(x, "x_category_hours_since")[1:3] == [3.0, 3.0]
    # The unknown category (item 3) and a never-touched category are missing, not zero.
    assert all(math.isnan(column(x, n)[3]) for n in ("x_category_affinity", "x_in_top_category",
                                                     "x_query_category_share"))
    assert math.isnan(column(x, "x_category_hours_since")[0])
    # Price 0 gives ratio 0 and |log| = inf -> NaN; a missing user price -> NaN.
    assert column(x, "x_price_ratio") == [1.0, 0.5, 0.0, 2.0]
    assert math.isnan(column(x, "x_abs_log_price_ratio")[2])
    assert column(x, "x_price_vs_max") == [0.5, 0.25, 0.0, 1.0]
    assert all(math.isnan(v) for v in column(x, "x_price_vs_purchase"))
    assert column(x, "x_popularity_rank") == [0.0, 0.5, 0.25, 0.75]  # by i_events_7d, as a fraction
    assert np.isfinite(x[~np.isnan(x)]).all()
    assert column(x, "c_user_device_share")[0] == 0.75
    assert np.allclose(column(x, "c_user_daypart_share")[0], 0.4)


def test_unknown_user_and_no_session_are_nan() -> None:
    model = small_model()
    x = feature_matrix(model, None, np.array([0, 1]), np.array([0.3, 0.2], np.float32), Context(now_ms=0))
    user_cols = [NAMES.index(f.name) for f in features.USER_FEATURES]
    assert np.isnan(x[:, user_cols]).all()
    assert np.isnan(column(x, "x_category_affinity")).all()
    assert column(x, "x_query_category_share") == [0.5, 0.5]  # needs no user: known for a session too
    assert np.isnan(column(x, "s_similarity")).all() and np.isnan(column(x, "s_category_match")).all()
    assert np.isnan(column(x, "c_user_device_share")).all()  # no device, and no user
    # A user with no categorised events has no top category.
    y = feature_matrix(model, 1, np.array([0, 1]), np.array([0.3, 0.2], np.float32), Context(now_ms=0))
    assert np.isnan(column(y, "x_in_top_category")).all()


def test_session_vector_gives_similarity_and_category_match() -> None:
    model = small_model()
    cands, scores, ctx = np.array([0, 1, 2, 3]), np.zeros(4, np.float32), Context(now_ms=0)
    session = np.array([0.1, 0.9, 0.2], np.float32)
    x = feature_matrix(model, 0, cands, scores, ctx, session_vector=session)
    assert np.allclose(column(x, "s_similarity"), model.item_vectors @ session)
    # Item 1 is most similar; it is alone in c1; item 3's category is unknown.
    assert column(x, "s_category_match")[:3] == [0.0, 1.0, 0.0] and math.isnan(column(x, "s_category_match")[3])
    # The five positional arguments callers pass today still work, with the session missing.
    assert np.array_equal(feature_matrix(model, 0, cands, scores, ctx)[:, :NAMES.index("s_similarity")],
                          x[:, :NAMES.index("s_similarity")], equal_nan=True)


def test_session_items_give_the_category_share_of_what_the_session_clicked() -> None:
    model = small_model()
    cands, scores, ctx = np.array([0, 1, 2, 3]), np.zeros(4, np.float32), Context(now_ms=0)
    # The session touched items 0, 2 (both c0) and 1 (c1): c0 items get 2/3, c1 items 1/3.
    x = feature_matrix(model, None, cands, scores, ctx, session_items=np.array([0, 2, 1]))
    share = column(x, "s_category_share")
    assert np.allclose(share[:3], [2 / 3, 1 / 3, 2 / 3]) and math.isnan(share[3])  # item 3: unknown category
    assert np.isnan(column(x, "s_similarity")).all()  # items without a session vector: only the share
    # No session items: missing, not zero.
    assert np.isnan(column(feature_matrix(model, None, cands, scores, ctx, session_items=np.array([], np.int64)),
                           "s_category_share")).all()
