"""The data-quality gate against real Great Expectations, on small frames whose verdict is known."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blink.errors import DataQualityError
from blink.feature_matrix import USER_FEATURES
from jobs.expectations import gate, recommendations_frame, validate_frame

NOW_MS = int(time.time() * 1000)


def clean_events(n: int = 200) -> pd.DataFrame:
    """Valid events: some anonymous users, some searches without an item, ratings with a value."""
    types = ["view", "click", "add_to_cart", "purchase", "search", "rating", "view", "view"]
    event_type = [types[i % len(types)] for i in range(n)]
    return pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "user_id": [None if i % 4 == 0 else f"u{i % 17}" for i in range(n)],
            "session_id": [f"s{i % 23}" for i in range(n)],
            "item_id": [None if t == "search" else f"i{i % 31}" for i, t in enumerate(event_type)],
            "event_type": event_type,
            "timestamp": pd.Series([NOW_MS - 1000 * i for i in range(n)], dtype="int64"),
            "device": [["desktop", "mobile", "tablet", "tv", "unknown"][i % 5] for i in range(n)],
            "value": [4.0 if t == "rating" else None for t in event_type],
            "context": [{"page": "home"}] * n,  # extra columns are allowed
        }
    )


def corrupted_events() -> pd.DataFrame:
    df = clean_events()
    df.loc[3, "event_type"] = "clik"
    df.loc[5, "event_id"] = "e4"
    df["timestamp"] = df["timestamp"] * 1_000_000  # nanoseconds, not milliseconds
    df.loc[0, "item_id"] = None  # a view without an item (only searches may lack one)
    return df


def items(prices: list[float | None]) -> pd.DataFrame:
    n = len(prices)
    return pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(n)], "category": ["books"] * n, "price": prices}
    )


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "gx", tmp_path / "docs"


def test_clean_events_pass_and_docs_mention_the_run(dirs: tuple[Path, Path]) -> None:
    result = validate_frame(clean_events(), "events", "run-clean", *dirs)

    assert result.success, result.failed
    assert result.failed == []
    assert result.evaluated >= 10
    assert result.docs_index == dirs[1] / "index.html"
    assert "run-clean" in result.docs_index.read_text()
    gate(result)  # does not raise


def test_corrupted_events_fail_and_gate_names_the_expectations(dirs: tuple[Path, Path]) -> None:
    result = validate_frame(corrupted_events(), "events", "run-bad", *dirs)

    assert not result.success
    failed = "\n".join(result.failed)
    assert "expect_column_values_to_be_in_set(event_type): 1 unexpected, e.g. ['clik']" in failed
    assert "expect_column_values_to_be_unique(event_id)" in failed
    assert "expect_column_values_to_be_between(timestamp): 200 unexpected" in failed
    assert "expect_column_values_to_not_be_null(item_id): 1 unexpected" in failed
    assert len(result.failed) == 4
    with pytest.raises(DataQualityError) as raised:
        gate(result)
    message = str(raised.value)
    assert "expect_column_values_to_be_in_set(event_type)" in message
    assert "expect_column_values_to_be_unique(event_id)" in message
    assert str(result.docs_index) in message


def test_interval_bounds_reject_events_outside_the_run(dirs: tuple[Path, Path]) -> None:
    df = clean_events()
    # The DAG narrows the bounds to its interval: here the last minute only.
    result = validate_frame(
        df, "events", "run-window", *dirs, min_ts_ms=NOW_MS - 60_000, max_ts_ms=NOW_MS
    )

    assert not result.success
    assert result.failed[0].startswith("expect_column_values_to_be_between(timestamp): 139 ")


def test_missing_column_and_empty_frame_fail(dirs: tuple[Path, Path]) -> None:
    result = validate_frame(clean_events(0).drop(columns="device"), "events", "run-empty", *dirs)

    assert not result.success
    failed = "\n".join(result.failed)
    assert "expect_table_row_count_to_be_between: observed 0" in failed
    assert "expect_table_columns_to_match_set: missing columns ['device']" in failed
    assert "expect_column_values_to_be_in_set(device): could not run" in failed


def test_validating_twice_is_idempotent_and_docs_keep_both_runs(
    dirs: tuple[Path, Path],
) -> None:
    first = validate_frame(clean_events(), "events", "2024-05-01T10", *dirs)
    second = validate_frame(clean_events(), "events", "2024-05-01T11", *dirs)

    assert first.success and second.success
    index = second.docs_index.read_text()
    assert "2024-05-01T10" in index and "2024-05-01T11" in index
    runs = sorted(p.name for p in (dirs[1] / "validations" / "events").iterdir())
    assert runs == ["2024-05-01T10", "2024-05-01T11"]


def test_rerunning_an_interval_replaces_its_docs_entry(dirs: tuple[Path, Path]) -> None:
    interval = "2024-05-01T10:00:00+00:00"  # GX reads the run time from a date-like run name
    bad = validate_frame(corrupted_events(), "events", interval, *dirs)
    fixed = validate_frame(clean_events(), "events", interval, *dirs)

    assert not bad.success and fixed.success
    pages = list((dirs[1] / "validations" / "events").rglob("*.html"))
    assert len(pages) == 1


def test_items_suite_pass_and_fail(dirs: tuple[Path, Path]) -> None:
    good = validate_frame(items([9.99, None, 0.0]), "items", "items-good", *dirs)
    bad_frame = items([9.99, -1.0, 5.0])
    bad_frame.loc[2, "item_id"] = "i0"
    bad_frame.loc[1, "category"] = None
    bad = validate_frame(bad_frame, "items", "items-bad", *dirs)

    assert good.success, good.failed
    assert not bad.success
    assert sorted(f.split(":")[0] for f in bad.failed) == [
        "expect_column_values_to_be_between(price)",
        "expect_column_values_to_be_unique(item_id)",
        "expect_column_values_to_not_be_null(category)",
    ]
    with pytest.raises(DataQualityError, match="suite 'items' failed 3"):
        gate(bad)


def user_features(tmp_path: Path, n: int = 20) -> pd.DataFrame:
    """A user features table as jobs/features.py writes it, array columns included."""
    df = pd.DataFrame({"user_id": [f"u{i}" for i in range(n)]})
    for feature in USER_FEATURES:
        df[feature.name] = [float(i + 1) for i in range(n)]
    shares = [c for c in df.columns if c.startswith("u_share_")]
    df[shares] = 1.0 / len(shares)
    df["u_mean_price"] = [None if i % 5 == 0 else 9.5 for i in range(n)]  # no priced item: null
    df["category_share"] = [np.array([0.25, 0.75])] * n
    df["history"] = [np.array([f"i{i}", f"i{i + 1}"]) for i in range(n)]
    # Through Parquet, so the arrays arrive as numpy arrays exactly as in the lake.
    df.to_parquet(tmp_path / "users.parquet", index=False)
    return pd.read_parquet(tmp_path / "users.parquet")


def test_features_suite_pass_and_fail(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    good_frame = user_features(tmp_path)
    good = validate_frame(good_frame, "features", "features-good", *dirs)
    bad_frame = good_frame.copy()
    bad_frame.loc[3, "u_share_mobile"] = 1.5
    bad_frame.loc[4, "user_id"] = "u0"
    bad = validate_frame(bad_frame, "features", "features-bad", *dirs)

    assert good.success, good.failed
    assert "history" in good_frame.columns  # the caller's frame is left as it was
    assert not bad.success
    assert sorted(f.split(":")[0] for f in bad.failed) == [
        "expect_column_values_to_be_between(u_share_mobile)",
        "expect_column_values_to_be_unique(user_id)",
    ]
    assert "e.g. [1.5]" in "\n".join(bad.failed)


def test_features_of_a_shop_without_known_users(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    """All visitors anonymous (user_id null, as the contract allows): no user features. The
    caller says so with min_users=0; by default an empty table still fails."""
    empty = user_features(tmp_path).iloc[0:0]
    assert validate_frame(empty, "features", "features-anonymous", *dirs, min_users=0).success
    broken = validate_frame(empty, "features", "features-broken", *dirs)
    assert broken.failed == ["expect_table_row_count_to_be_between: observed 0"]


def head_list(items: list[str], scores: list[float] | None = None) -> str:
    scores = scores if scores is not None else [float(len(items) - i) for i in range(len(items))]
    return json.dumps([[i, s] for i, s in zip(items, scores, strict=True)])


HISTORY = {"good": {"x1", "x2"}, "consumed": {"c3"}}


def test_recommendations_frame_summarises_each_list() -> None:
    lists = pd.DataFrame(
        {
            "user_id": ["good", "consumed", "twice", "unsorted"],
            "items": [
                head_list(["a", "b", "c"]),
                head_list(["c1", "c2", "c3"]),
                head_list(["a", "b", "a"]),
                head_list(["a", "b", "c"], [3.0, 1.0, 2.0]),
            ],
        }
    )
    frame = recommendations_frame(lists, HISTORY, k=3, model_version="v7")

    assert frame["n_items"].tolist() == [3, 3, 3, 3]
    assert frame["n_distinct"].tolist() == [3, 3, 2, 3]
    assert frame["n_consumed"].tolist() == [0, 1, 0, 0]
    assert frame["scores_sorted"].tolist() == [True, True, True, False]
    assert set(frame["model_version"]) == {"v7"}


def test_recommendations_frame_rejects_a_list_that_is_not_json() -> None:
    lists = pd.DataFrame({"user_id": ["u1"], "items": ["[[\"a\", 1"]})
    with pytest.raises(DataQualityError, match="head list of user 'u1'"):
        recommendations_frame(lists, {}, k=1, model_version="v7")


def test_recommendations_suite_pass_and_each_failure_named(dirs: tuple[Path, Path]) -> None:
    good_lists = pd.DataFrame(
        {
            "user_id": ["good", "new-user"],  # a user without history is fine
            "items": [head_list(["a", "b", "c", "d"]), head_list(["a", "b", "c", "d"], [2.0] * 4)],
        }
    )
    bad_lists = pd.DataFrame(
        {
            "user_id": ["consumed", "twice", "unsorted", "short"],
            "items": [
                head_list(["a", "b", "c3", "d"]),
                head_list(["a", "b", "a", "d"]),
                head_list(["a", "b", "c", "d"], [4.0, 3.0, 3.5, 1.0]),
                head_list(["a", "b", "c"]),
            ],
        }
    )
    good = validate_frame(
        recommendations_frame(good_lists, HISTORY, 4, "v7"), "recommendations", "recs-good", *dirs,
        k=4,
    )
    bad = validate_frame(
        recommendations_frame(bad_lists, HISTORY, 4, "v7"), "recommendations", "recs-bad", *dirs,
        k=4,
    )

    assert good.success, good.failed
    assert not bad.success
    failed = "\n".join(bad.failed)
    assert "expect_column_values_to_be_between(n_consumed): 1 unexpected, e.g. [1]" in failed
    assert "expect_column_pair_values_to_be_equal(n_distinct, n_items): 1 unexpected" in failed
    assert "expect_column_values_to_be_in_set(scores_sorted): 1 unexpected, e.g. [False]" in failed
    assert "expect_column_values_to_be_between(n_items): 1 unexpected, e.g. [3]" in failed
    assert len(bad.failed) == 4
    with pytest.raises(DataQualityError, match="suite 'recommendations' failed 4"):
        gate(bad)
