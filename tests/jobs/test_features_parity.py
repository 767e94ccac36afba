"""The same user, item and time give the same feature values offline and online.

The chain, each link tested on tiny synthetic data with a real local Spark:

1. Spark's aggregates are right: a plain pandas implementation written independently here
   recomputes every user and item feature (and the per-category arrays) for chosen users and
   items at two cut-offs, and the ``features`` job's tables must match it.
2. The tables reach the model unchanged: each user / item column of ``feature_matrix`` is the
   value in the written table, found by name.
3. Offline = online: the ranker's training rows, built in Spark workers from the artifact on
   disk (jobs.ranker.training_rows), equal what the serving path feeds the booster in-process
   (Pipeline.recommend) for the same user, candidates and request time and device.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from blink import layout
from blink.config import Config, RetrievalConfig, SparkConfig
from blink.feature_matrix import (
    DAY_MS,
    DAY_PARTS,
    DEVICES,
    EVENT_TYPES,
    HOUR_MS,
    ITEM_FEATURES,
    NAMES,
    TRENDS,
    USER_FEATURES,
    WINDOWS,
    Context,
)
from blink.model import Model
from blink.pipeline import Pipeline
from blink.retrieval import Retriever
from tools import synth

pytestmark = pytest.mark.integration
END_MS = 1_772_625_600_000  # Wednesday 2026-03-04 12:00 UTC, so windows cross a weekend
AS_OFS = (END_MS - 2 * DAY_MS - 7 * HOUR_MS - 123_456, END_MS)  # mid-history, and the very end
TRAIN_AS_OF = AS_OFS[0]
N_CANDIDATES = 60
EVENT_SCHEMA = ("event_id string, user_id string, session_id string, item_id string, event_type string, "
                "timestamp long, device string, value double, price double")
ITEM_SCHEMA = "item_id string, category string, price double, created_at long, title string"


@pytest.fixture(scope="module")
def data() -> synth.Dataset:
    """Tiny synthetic data plus the awkward cases: event prices, unpriced and uncategorised items."""
    ds = synth.generate("tiny", seed=11, end_ms=END_MS)
    items, events = ds.items.copy(), ds.events.copy()
    items.loc[items.index[::37], "price"] = np.nan
    items.loc[items.index[5::53], "category"] = None
    # Some events carry the price paid (event.v2), which must win over the catalogue price.
    catalogue = items.set_index("item_id")["price"]
    priced = events.index[::6]
    events["price"] = np.nan
    events.loc[priced, "price"] = (catalogue.reindex(events.loc[priced, "item_id"]).to_numpy() * 0.9).round(2)
    return synth.Dataset(items=items, users=ds.users, events=events)


def _records(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows with None for missing values (Spark keeps NaN as a number, the lake has nulls)."""
    return list(frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None))


@pytest.fixture(scope="module")
def spark() -> Any:
    from jobs import spark as blink_spark

    return blink_spark.get_spark(Config(spark=SparkConfig(master="local[2]", shuffle_partitions=2,
                                                        driver_memory="1g")))


@pytest.fixture(scope="module")
def frames(spark: Any, data: synth.Dataset) -> tuple[Any, Any, list[str]]:
    from jobs.aggregates import categories_of

    events = spark.createDataFrame(_records(data.events[[c.split()[0] for c in EVENT_SCHEMA.split(", ")]]),
                                   EVENT_SCHEMA)
    items = spark.createDataFrame(_records(data.items), ITEM_SCHEMA)
    return events, items, categories_of(items)


@pytest.fixture(scope="module")
def tables(frames: tuple[Any, Any, list[str]]) -> dict[int, tuple[pd.DataFrame, pd.DataFrame]]:
    """as_of -> (users, items) as the Spark features job computes them."""
    from jobs.aggregates import transform

    events, items, categories = frames
    out = {}
    for as_of in AS_OFS:
        users, items_out, _ = transform(events, items, as_of, categories)
        out[as_of] = (users.toPandas().set_index("user_id"), items_out.toPandas().set_index("item_id"))
    return out


# ---- 1. an independent pandas reference ------------------------------------------------------

def _joined(data: synth.Dataset, as_of: int) -> pd.DataFrame:
    ev = data.events[data.events["timestamp"] < as_of]
    ev = ev.merge(data.items[["item_id", "category", "price"]].rename(columns={"price": "item_price"}),
                  on="item_id", how="left")
    return ev.assign(paid=ev["price"].fillna(ev["item_price"]), age=as_of - ev["timestamp"])


def _ratio(a: float, b: float) -> float:
    return a / b if b else np.nan


def reference_user(ev: pd.DataFrame, as_of: int, categories: list[str]) -> dict[str, Any]:
    """Every user feature for one user's events before ``as_of``, written the obvious way."""
    out: dict[str, Any] = {"u_events": len(ev)}
    for w, ms in WINDOWS.items():
        out[f"u_events_{w}"] = (ev["age"] < ms).sum()
    for t in EVENT_TYPES:
        out[f"u_{t}"] = (ev["event_type"] == t).sum()
        for w, ms in WINDOWS.items():
            out[f"u_{t}_{w}"] = ((ev["event_type"] == t) & (ev["age"] < ms)).sum()
    buys = ev[ev["event_type"] == "purchase"]
    out["u_hours_since_last"] = ev["age"].min() / HOUR_MS
    out["u_hours_since_first"] = ev["age"].max() / HOUR_MS
    out["u_hours_since_purchase"] = buys["age"].min() / HOUR_MS if len(buys) else np.nan
    out["u_distinct_items"] = ev["item_id"].nunique()
    out["u_distinct_categories"] = ev["category"].dropna().nunique()
    out["u_sessions"] = ev["session_id"].nunique()
    out["u_active_days"] = pd.to_datetime(ev["timestamp"], unit="ms").dt.date.nunique()
    out["u_events_per_session"] = len(ev) / ev["session_id"].nunique()
    out["u_items_per_event"] = ev["item_id"].nunique() / len(ev)
    out["u_purchase_per_view"] = _ratio(out["u_purchase"], out["u_view"])
    out["u_cart_per_view"] = _ratio(out["u_add_to_cart"], out["u_view"])
    for d in DEVICES:
        out[f"u_share_{d}"] = (ev["device"] == d).mean()
    hour = pd.to_datetime(ev["timestamp"], unit="ms").dt.hour
    for start, part in zip((0, 6, 12, 18), DAY_PARTS, strict=True):
        out[f"u_share_{part}"] = hour.between(start, start + 5).mean()
    out["u_mean_price"] = ev["paid"].mean()
    out["u_max_price"] = ev["paid"].max()
    out["u_mean_purchase_price"] = buys["paid"].mean()
    per_cat = ev["category"].value_counts()
    p = per_cat / per_cat.sum()
    out["u_category_entropy"] = float(-(p * np.log(p)).sum()) if len(p) else np.nan
    out["u_top_category_share"] = p.max() if len(p) else np.nan
    out["category_share"] = [per_cat.get(c, 0) / len(ev) for c in categories]
    last = ev.groupby("category")["age"].min() / HOUR_MS
    out["category_hours"] = [last.get(c, np.nan) for c in categories]
    return out


def reference_item(ev: pd.DataFrame, items: pd.DataFrame, item_id: str, as_of: int) -> dict[str, Any]:
    """Every item feature for one catalogue item, from all events before the cut-off."""
    mine = ev[ev["item_id"] == item_id]
    row = items.set_index("item_id").loc[item_id]
    out: dict[str, Any] = {"i_events": len(mine)}
    for w, ms in WINDOWS.items():
        out[f"i_events_{w}"] = (mine["age"] < ms).sum()
        out[f"i_users_{w}"] = mine.loc[mine["age"] < ms, "user_id"].dropna().nunique()
        for t in EVENT_TYPES:
            out[f"i_{t}_{w}"] = ((mine["event_type"] == t) & (mine["age"] < ms)).sum()
    out["i_users"] = mine["user_id"].dropna().nunique()
    for short, long in TRENDS:
        out[f"i_trend_{short}_{long}"] = (out[f"i_events_{short}"] * WINDOWS[long] / WINDOWS[short]
                                          / (out[f"i_events_{long}"] + 1))
    kinds = mine["event_type"].value_counts()
    out["i_purchase_per_view"] = _ratio(kinds.get("purchase", 0), kinds.get("view", 0))
    out["i_cart_per_view"] = _ratio(kinds.get("add_to_cart", 0), kinds.get("view", 0))
    out["i_click_per_view"] = _ratio(kinds.get("click", 0), kinds.get("view", 0))
    out["i_events_per_user"] = _ratio(len(mine), out["i_users"])
    out["i_hours_since_last"] = mine["age"].min() / HOUR_MS if len(mine) else np.nan
    for d in DEVICES:
        out[f"i_share_{d}"] = (mine["device"] == d).mean() if len(mine) else np.nan
    same = items[items["category"] == row["category"]] if row["category"] is not None else items.iloc[:0]
    week = ev[ev["age"] < WINDOWS["7d"]]
    in_category = (week["category"] == row["category"]).sum()
    known = row["category"] is not None
    out["i_price"] = row["price"]
    out["i_price_vs_category"] = row["price"] / same["price"].median() if known else np.nan
    out["i_age_days"] = (as_of - row["created_at"]) / DAY_MS
    out["i_category_items"] = len(same) if known else np.nan
    out["i_category_share_7d"] = _ratio(in_category, len(week)) if known else np.nan
    out["i_share_of_category_7d"] = _ratio(out["i_events_7d"], in_category) if known else np.nan
    return out


def _assert_close(got: Any, want: Any, what: str) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert np.allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True), f"{what}: spark {got} != reference {want}"


@pytest.mark.parametrize("as_of", AS_OFS)
def test_spark_user_features_match_the_pandas_reference(
        as_of: int, data: synth.Dataset, tables: dict[int, Any], frames: tuple[Any, Any, list[str]]) -> None:
    users, _ = tables[as_of]
    ev = _joined(data, as_of)
    known = ev[ev["user_id"].notna()]
    assert set(users.index) == set(known["user_id"])
    active = known["user_id"].value_counts()
    chosen = list(active.index[:10]) + list(active.sample(30, random_state=3).index)
    chosen += list(known.loc[known["event_type"] == "purchase", "user_id"].drop_duplicates()[:5])
    reference_names = set()
    for user in chosen:
        want = reference_user(known[known["user_id"] == user], as_of, frames[2])
        reference_names |= set(want)
        for name, value in want.items():
            _assert_close(users.loc[user, name], value, f"{user} {name}")
    assert reference_names >= {f.name for f in USER_FEATURES}, "every user feature needs a reference"


@pytest.mark.parametrize("as_of", AS_OFS)
def test_spark_item_features_match_the_pandas_reference(
        as_of: int, data: synth.Dataset, tables: dict[int, Any]) -> None:
    _, items = tables[as_of]
    ev = _joined(data, as_of)
    assert set(items.index) == set(data.items["item_id"])
    touched = ev["item_id"].value_counts()
    odd = data.items.loc[data.items["price"].isna() | data.items["category"].isna(), "item_id"]
    quiet = sorted(set(data.items["item_id"]) - set(touched.index))[:3]
    chosen = list(touched.index[:10]) + list(touched.sample(20, random_state=4).index) + list(odd[:6]) + quiet
    for item in chosen:
        want = reference_item(ev, data.items, item, as_of)
        assert set(want) == {f.name for f in ITEM_FEATURES}, "every item feature needs a reference"
        for name, value in want.items():
            _assert_close(items.loc[item, name], value, f"{item} {name}")


# ---- 2 and 3. the published artifact, offline and online --------------------------------------

@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, frames: tuple[Any, Any, list[str]],
             data: synth.Dataset) -> Path:
    """A model version with features as of TRAIN_AS_OF, seeded item vectors and a ScaNN index."""
    from jobs.aggregates import transform, write

    events, items, categories = frames
    directory = tmp_path_factory.mktemp("artifacts") / "parity"
    write(*transform(events, items, TRAIN_AS_OF, categories), layout.features_dir(directory, "train"),
          TRAIN_AS_OF, categories)
    vectors = np.random.default_rng(5).normal(size=(len(data.items), 8)).astype(np.float32)
    # No ALS users: every user is folded in as the mean of what they touched.
    np.savez(directory / layout.EMBEDDINGS, item_ids=data.items["item_id"].to_numpy(str), item_vectors=vectors,
             user_ids=np.array([], str), user_vectors=np.zeros((0, 8), np.float32))
    Retriever.build(vectors, RetrievalConfig(candidates=N_CANDIDATES)).save(directory)
    return directory


class RecordingBooster:
    """Stands in for XGBoost on the serving path and keeps the matrix it was asked to score."""

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def inplace_predict(self, x: np.ndarray) -> np.ndarray:
        self.seen.append(np.array(x))
        return np.zeros(len(x), np.float32)


def _requests(model: Model, n: int) -> Iterator[tuple[str, Context]]:
    """Known users with varied request times (across day parts and a weekend) and devices."""
    pipe = Pipeline(model, N_CANDIDATES)
    users = [u for u in model.user_ids if pipe.user_position(u) is not None]
    for j, user in enumerate(users[:: max(1, len(users) // n)][:n]):
        yield user, Context(now_ms=TRAIN_AS_OF + j * 7 * HOUR_MS, device=[*DEVICES, "unknown", None][j % 6])


def test_matrix_columns_are_the_features_table_values(artifact: Path) -> None:
    model = Model.load(artifact, "train", ranker=False)
    fdir = layout.features_dir(artifact, "train")
    users = pd.read_parquet(fdir / "users.parquet").set_index("user_id")
    items = pd.read_parquet(fdir / "items.parquet").set_index("item_id")
    pipe = Pipeline(model, N_CANDIDATES)
    for user, ctx in _requests(model, 12):
        pos = pipe.user_position(user)
        assert pos is not None
        q = pipe.query(user)
        assert q is not None
        cands = pipe.candidates_for(q)
        x = pipe.features(q, cands, ctx)
        ids = model.item_ids[cands.positions]
        for f in USER_FEATURES:
            np.testing.assert_array_equal(x[:, NAMES.index(f.name)], np.float32(users.loc[user, f.name]), f.name)
        for f in ITEM_FEATURES:
            np.testing.assert_array_equal(x[:, NAMES.index(f.name)],
                                          items.loc[ids, f.name].to_numpy(np.float32), f.name)
        cat = {c: j for j, c in enumerate(model.categories)}
        hours = [users.loc[user, "category_hours"][cat[c]] if c in cat else np.nan
                 for c in items.loc[ids, "category"]]
        np.testing.assert_array_equal(x[:, NAMES.index("x_category_hours_since")], np.float32(hours))
        assert np.isnan(x[:, NAMES.index("s_similarity")]).all()  # no session vector on this path yet


def test_training_rows_in_spark_workers_equal_the_serving_path(spark: Any, artifact: Path) -> None:
    from jobs.ranker import training_rows
    from jobs.spark import map_partitions

    model = Model.load(artifact, "train", ranker=False)
    booster = RecordingBooster()
    model.booster = booster
    pipe = Pipeline(model, N_CANDIDATES)
    requests = []
    for j, (user, ctx) in enumerate(_requests(model, 24)):
        pos = pipe.user_position(user)
        assert pos is not None
        pipe.recommend(user, 10, ctx)  # the tail path, in-process: retrieve, features, rank
        q = pipe.query(user)
        assert q is not None
        liked = model.item_ids[pipe.candidates_for(q).positions[j % 7]]  # a positive, so the group is kept
        requests.append((user, {str(liked): 2}, ctx.now_ms, ctx.device))
    rows = map_partitions(spark, requests, partial(training_rows, str(artifact), pipe.sizes), partitions=3)
    assert len(rows) == len(booster.seen) == 24
    for (x, y), online in zip(rows, booster.seen, strict=True):
        assert x.dtype == np.float32 and x.shape[1] == len(NAMES) and len(x) >= N_CANDIDATES
        np.testing.assert_array_equal(x, online)  # bit for bit, NaN where NaN
        assert y.sum() == 2
