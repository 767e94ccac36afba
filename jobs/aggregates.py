"""Features: user and item aggregates over time windows, as of each cut-off of the split.

The columns produced are exactly blink.feature_matrix.USER_FEATURES / ITEM_FEATURES (a test
checks it, and tests/test_features_parity.py recomputes them independently); serving looks
them up by position from the published artifact. Per user it also writes two arrays
aligned with ``categories`` (meta.json): the share of events in each category and the hours
since the user last touched it. Also writes the trending list (the fallback), each user's
consumption history (filtered at serve time) and most recent items (``recent``, newest
first), and the item-to-item co-visitation lists (``covisit.parquet``, a candidate source).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from blink import layout
from blink.config import Config
from blink.feature_matrix import DAY_MS, DAY_PARTS, DEVICES, EVENT_TYPES, HOUR_MS, TRENDS, WINDOWS
from jobs.interval import Interval
from jobs.spark import get_spark

log = logging.getLogger(__name__)
TRENDING_SIZE = 500
AS_OF_TAGS = ("train", "eval", "serve")
WEEK_MS = WINDOWS["7d"]
RECENT_SIZE = 20  # items in users.parquet `recent`

# Co-visitation weights are summed exactly as integers in units of 1/(2*lcm(1..window)); a
# long holds those sums up to this unit size with room for ~2e10 co-visits per pair.
_LONG_UNITS_MAX = 2**31


def transform(events: Any, items: Any, as_of_ms: int, categories: list[str]) -> tuple[Any, Any, Any]:
    """(users, items, trending) DataFrames from events strictly before ``as_of_ms``."""
    from pyspark.sql import functions as F

    if "price" not in events.columns:  # event.v1 data: no price at the time of the event
        events = events.withColumn("price", F.lit(None).cast("double"))
    catalogue = items.select("item_id", "category", F.col("price").alias("item_price"))
    ev = (
        events.where(F.col("timestamp") < as_of_ms).withColumnRenamed("price", "event_price")
        .join(catalogue, "item_id", "left")
        .withColumn("price", F.coalesce("event_price", "item_price"))
        .withColumn("age", F.lit(as_of_ms) - F.col("timestamp"))
        .withColumn("day_part", F.floor((F.col("timestamp") % DAY_MS) / (6 * HOUR_MS)))
    )
    users = _users(ev, as_of_ms, categories)
    items_out, stats = _items(ev, items, as_of_ms)
    # Trending: the last day counts most, the last week breaks ties and fills quiet hours.
    trending = (stats.withColumn("score", F.col("i_events_1d") + 0.1 * F.col("i_events_7d"))
                .where(F.col("score") > 0).orderBy(F.desc("score"), "item_id").limit(TRENDING_SIZE))
    return users, items_out, trending


def _count_if(cond: Any) -> Any:
    from pyspark.sql import functions as F

    return F.sum(F.when(cond, 1).otherwise(0)).cast("double")


def _distinct(col: Any) -> Any:
    """Distinct non-null values, as a plain aggregate: several countDistinct in one groupBy
    make Spark copy every row once per distinct column (5x slower on the demo data)."""
    from pyspark.sql import functions as F

    return F.size(F.collect_set(col)).cast("double")


def _hours_before(as_of_ms: int, ts: Any) -> Any:
    from pyspark.sql import functions as F

    return (F.lit(as_of_ms) - ts) / HOUR_MS


def _typed_counts(prefix: str) -> list[Any]:
    """Events overall, per window, per type and per type x window: the activity counts."""
    from pyspark.sql import functions as F

    is_type, age = (lambda t: F.col("event_type") == t), F.col("age")
    aggs = [F.count("*").cast("double").alias(f"{prefix}_events")]
    aggs += [_count_if(age < ms).alias(f"{prefix}_events_{w}") for w, ms in WINDOWS.items()]
    aggs += [_count_if(is_type(t)).alias(f"{prefix}_{t}") for t in EVENT_TYPES]
    aggs += [_count_if(is_type(t) & (age < ms)).alias(f"{prefix}_{t}_{w}")
             for t in EVENT_TYPES for w, ms in WINDOWS.items()]
    return aggs


def _users(ev: Any, as_of_ms: int, categories: list[str]) -> Any:
    from pyspark.sql import functions as F

    known = ev.where(F.col("user_id").isNotNull())
    n, purchase = F.count("*"), F.col("event_type") == "purchase"
    aggs = _typed_counts("u") + [
        _hours_before(as_of_ms, F.max("timestamp")).alias("u_hours_since_last"),
        _hours_before(as_of_ms, F.min("timestamp")).alias("u_hours_since_first"),
        _hours_before(as_of_ms, F.max(F.when(purchase, F.col("timestamp")))).alias("u_hours_since_purchase"),
        _distinct("item_id").alias("u_distinct_items"),
        _distinct("category").alias("u_distinct_categories"),
        _distinct("session_id").alias("u_sessions"),
        _distinct(F.floor(F.col("timestamp") / DAY_MS)).alias("u_active_days"),
        F.try_divide(n, _distinct("session_id")).alias("u_events_per_session"),
        (_distinct("item_id") / n).alias("u_items_per_event"),
    ]
    user = known.groupBy("user_id").agg(
        *aggs, *[(_count_if(F.col("device") == d) / n).alias(f"u_share_{d}") for d in DEVICES],
        *[(_count_if(F.col("day_part") == j) / n).alias(f"u_share_{p}") for j, p in enumerate(DAY_PARTS)],
        F.avg("price").alias("u_mean_price"), F.max("price").alias("u_max_price"),
        F.avg(F.when(purchase, F.col("price"))).alias("u_mean_purchase_price"),
        F.collect_set("item_id").alias("history"))
    user = (user.withColumn("u_purchase_per_view", F.try_divide("u_purchase", "u_view"))
            .withColumn("u_cart_per_view", F.try_divide("u_add_to_cart", "u_view"))
            .join(_recent(known), "user_id", "left")
            # A user whose events carry no item (searches only) has recent items: none.
            .withColumn("recent", F.coalesce("recent", F.array().cast("array<string>"))))
    return _with_categories(user, known, as_of_ms, categories)


def _recent(known: Any) -> Any:
    """user_id -> ``recent``: the last RECENT_SIZE distinct items, newest first (ties by item id)."""
    from pyspark.sql import functions as F

    # One row per (user, item) first, so the per-user array holds distinct items, not every event.
    last = (known.where(F.col("item_id").isNotNull()).groupBy("user_id", "item_id")
            .agg(F.max("timestamp").alias("ts")))
    # Ascending on (-ts, item_id) = newest first, and equal times in item id order.
    newest = F.sort_array(F.collect_list(F.struct((-F.col("ts")).alias("neg_ts"), "item_id")))
    return last.groupBy("user_id").agg(
        F.transform(F.slice(newest, 1, RECENT_SIZE), lambda x: x["item_id"]).alias("recent"))


def covisitation(events: Any, as_of_ms: int, *, window: int, max_gap_ms: int, top_n: int) -> Any:
    """Items that follow each item in users' (or anonymous sessions') event sequences.

    Over events before ``as_of_ms`` with an item, each sequence (a user's events; a session's
    when the user is anonymous) is ordered by time. Every event ``a`` and each of the next
    ``window`` events ``b`` at ``lag`` 1..window that is a different item no more than
    ``max_gap_ms`` later adds 1/lag to (a -> b) and 0.5/lag to (b -> a): co-visitation is mostly,
    not only, forward. Per ``a`` the ``top_n`` heaviest ``b`` are kept (ties by ``b`` id), scored
    relative to the heaviest. Columns: ``item_id``, ``neighbours`` (array<string>, best first),
    ``scores`` (array<double> in (0, 1], same order).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    # Exact weights: 1/lag and 0.5/lag are integers in units of 1/(2*lcm(1..window)), and integer
    # sums do not depend on the order Spark adds them in. Doubles would, so two neighbours with
    # equal weight could swap places between runs instead of being ordered by id.
    units = 2 * math.lcm(*range(1, window + 1))
    weight_type = "long" if units <= _LONG_UNITS_MAX else "decimal(38,0)"  # exact up to 1e38

    def weight(n: int) -> Any:
        return F.lit(str(n)).cast(weight_type)  # via a string: a decimal unit may not fit a long

    ev = (events.where((F.col("timestamp") < as_of_ms) & F.col("item_id").isNotNull()
                       & (F.col("user_id").isNotNull() | F.col("session_id").isNotNull()))
          # The sequence key: the user, or the session of an anonymous visitor.
          .select("item_id", "timestamp", "event_id", "user_id",
                  F.when(F.col("user_id").isNull(), F.col("session_id")).alias("anon_session")))
    # F.lead over one window rather than collect_list + posexplode: the window is one shuffle of
    # narrow rows and a sort that streams through each sequence (its buffer spills to disk), so
    # a bot with millions of events is just a long partition; collect_list would build each
    # sequence as a single in-memory array (no spilling, 2 GB row limit) and then copy it per
    # event. All `window` leads share the window spec, so Spark computes them in one pass.
    # event_id breaks timestamp ties so the order, and the result, is deterministic.
    seq = Window.partitionBy("user_id", "anon_session").orderBy("timestamp", "event_id")
    later = F.array(*[F.struct(F.lead("item_id", lag).over(seq).alias("b"),
                               F.lead("timestamp", lag).over(seq).alias("b_ts"),
                               weight(units // lag).alias("forward"), weight(units // (2 * lag)).alias("reverse"))
                      for lag in range(1, window + 1)])
    near = (ev.select(F.col("item_id").alias("a"), F.col("timestamp").alias("a_ts"), later.alias("later"))
            .select("a", "a_ts", F.inline("later"))  # a generator cannot take window functions directly
            .where(F.col("b").isNotNull() & (F.col("b") != F.col("a"))
                   & (F.col("b_ts") - F.col("a_ts") <= max_gap_ms)))
    pairs = near.select(F.inline(F.array(
        F.struct("a", "b", F.col("forward").alias("w")),
        F.struct(F.col("b").alias("a"), F.col("a").alias("b"), F.col("reverse").alias("w")))))
    summed = pairs.groupBy("a", "b").agg(F.sum("w").alias("w"))
    # row_number <= top_n lets Spark cut each item's list before the shuffle (a window group limit).
    best = Window.partitionBy("a").orderBy(F.desc("w"), "b")
    top = summed.withColumn("rank", F.row_number().over(best)).where(F.col("rank") <= top_n)
    ranked = top.groupBy("a").agg(F.sort_array(F.collect_list(F.struct("rank", "b", "w"))).alias("top"))
    heaviest = F.col("top")[0]["w"].cast("double")
    return ranked.select(
        F.col("a").alias("item_id"),
        F.transform("top", lambda x: x["b"]).alias("neighbours"),
        F.transform("top", lambda x: x["w"].cast("double") / heaviest).alias("scores"))


def write_covisitation(covisit: Any, out: Path) -> int:
    """Write ``covisit.parquet`` (at most one row per item, so via pandas); returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("item_id", pa.string()), ("neighbours", pa.list_(pa.string())),
                        ("scores", pa.list_(pa.float64()))])
    frame = covisit.toPandas()
    # An explicit schema: with no rows (a cut-off before any sequence) pyarrow would infer nulls.
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), out / layout.COVISITATION)
    return len(frame)


def _with_categories(users: Any, known: Any, as_of_ms: int, categories: list[str]) -> Any:
    """Per-category arrays (aligned with ``categories``) and the concentration they imply."""
    from pyspark.sql import functions as F

    per_cat = (known.where(F.col("category").isNotNull()).groupBy("user_id").pivot("category", categories)
               .agg(F.count(F.lit(1)).alias("n"), F.max("timestamp").alias("last")))
    counts = F.array(*[F.coalesce(F.col(f"`{c}_n`"), F.lit(0)).cast("double") for c in categories])
    hours = F.array(*[_hours_before(as_of_ms, F.col(f"`{c}_last`")) for c in categories])
    per_cat = per_cat.select("user_id", counts.alias("cat_counts"), hours.cast("array<double>").alias("category_hours"))
    total = F.aggregate("cat_counts", F.lit(0.0), lambda acc, x: acc + x)
    entropy = F.aggregate("cat_counts", F.lit(0.0),
                          lambda acc, x: acc - F.when(x > 0, x / total * F.log(x / total)).otherwise(0.0))
    return (
        users.join(per_cat, "user_id", "left")
        # Users whose events all hit unknown categories have no pivot row: zero counts.
        .withColumn("cat_counts", F.coalesce("cat_counts", F.array(*[F.lit(0.0)] * len(categories))))
        .withColumn("category_hours", F.coalesce(
            "category_hours", F.array(*[F.lit(None).cast("double")] * len(categories))))
        .withColumn("category_share", F.transform("cat_counts", lambda x: x / F.col("u_events")))
        .withColumn("u_category_entropy", F.when(total > 0, entropy))
        .withColumn("u_top_category_share", F.try_divide(F.array_max("cat_counts"), total))
        .drop("cat_counts")
    )


def _items(ev: Any, items: Any, as_of_ms: int) -> tuple[Any, Any]:
    """(item features for every catalogue item, per-item event stats for the trending list)."""
    from pyspark.sql import functions as F

    user_in = [_distinct(F.when(F.col("age") < ms, F.col("user_id"))).alias(f"i_users_{w}")
               for w, ms in WINDOWS.items()]
    stats = ev.groupBy("item_id").agg(
        *_typed_counts("i"), _distinct("user_id").alias("i_users"), *user_in,
        _hours_before(as_of_ms, F.max("timestamp")).alias("i_hours_since_last"),
        *[_count_if(F.col("device") == d).alias(f"n_{d}") for d in DEVICES])
    counts = [c for c in stats.columns if c.startswith(("i_events", "i_users", *[f"i_{t}" for t in EVENT_TYPES]))]
    week = ev.where(F.col("age") < WEEK_MS)
    cat_week = week.groupBy("category").agg(F.count("*").cast("double").alias("cat_events_7d"))
    all_week = week.agg(F.count("*").cast("double").alias("all_events_7d"))
    cats = (items.groupBy("category").agg(F.median("price").alias("cat_median_price"),
                                          F.count("*").cast("double").alias("i_category_items"))
            .join(cat_week, "category", "left").fillna(0.0, ["cat_events_7d"]).crossJoin(all_week))
    out = items.join(stats, "item_id", "left").fillna(0.0, counts).join(cats, "category", "left")
    for short, long in TRENDS:
        ratio = WINDOWS[long] / WINDOWS[short]
        out = out.withColumn(f"i_trend_{short}_{long}",
                             F.col(f"i_events_{short}") * ratio / (F.col(f"i_events_{long}") + 1))
    out = (
        out.withColumn("i_purchase_per_view", F.try_divide("i_purchase", "i_view"))
        .withColumn("i_cart_per_view", F.try_divide("i_add_to_cart", "i_view"))
        .withColumn("i_click_per_view", F.try_divide("i_click", "i_view"))
        .withColumn("i_events_per_user", F.try_divide("i_events", "i_users"))
        .select("*", *[F.try_divide(f"n_{d}", "i_events").alias(f"i_share_{d}") for d in DEVICES])
        .withColumn("i_price", F.col("price"))
        .withColumn("i_price_vs_category", F.try_divide("price", "cat_median_price"))
        .withColumn("i_age_days", (F.lit(as_of_ms) - F.col("created_at")) / DAY_MS)
        .withColumn("i_category_share_7d", F.try_divide("cat_events_7d", "all_events_7d"))
        .withColumn("i_share_of_category_7d", F.try_divide("i_events_7d", "cat_events_7d"))
    )
    return out, stats


def write(users: Any, items_out: Any, trending: Any, out: Path, as_of_ms: int, categories: list[str]) -> int:
    """Write users.parquet, items.parquet and meta.json for one cut-off; returns the user count."""
    from blink.feature_matrix import ITEM_FEATURES, USER_FEATURES

    out.mkdir(parents=True, exist_ok=True)
    user_cols = ["user_id", *[f.name for f in USER_FEATURES], "category_share", "category_hours", "history", "recent"]
    item_cols = ["item_id", "category", *[f.name for f in ITEM_FEATURES]]
    users_pd = users.select(*user_cols).toPandas()
    users_pd.to_parquet(out / "users.parquet", index=False)
    items_out.select(*item_cols).toPandas().to_parquet(out / "items.parquet", index=False)
    top = [(r["item_id"], float(r["score"])) for r in trending.collect()]
    (out / "meta.json").write_text(json.dumps({"as_of_ms": as_of_ms, "categories": categories, "trending": top}))
    return len(users_pd)


def categories_of(items: Any) -> list[str]:
    """The category order every per-category array follows (stored in meta.json)."""
    return sorted(r[0] for r in items.select("category").distinct().collect() if r[0] is not None)


def run(cfg: Config, interval: Interval) -> dict[str, int]:
    """Write features/<as_of>/{users,items,covisit}.parquet + meta.json for each cut-off."""
    return compute(cfg, interval, AS_OF_TAGS)


def compute(cfg: Config, interval: Interval, tags: tuple[str, ...]) -> dict[str, int]:
    """The aggregates at the cut-offs ``tags`` (the hourly refresh needs only ``serve``)."""
    from pyspark.sql import functions as F

    spark = get_spark(cfg)
    lake = cfg.layout.lake
    events = spark.read.parquet(str(lake / "events")).drop("date", "hour", "batch").cache()
    items = spark.read.parquet(str(lake / "items")).cache()
    categories = categories_of(items)
    cand = cfg.candidates
    counts = {}
    for tag in tags:
        as_of = interval.as_of(tag)
        tables = transform(events, items, as_of, categories)
        out = layout.features_dir(interval.artifact_dir, tag)
        counts[f"users_{tag}"] = write(*tables, out, as_of, categories)
        covisit = covisitation(events, as_of, window=cand.covisit_window,
                               max_gap_ms=int(cand.covisit_max_gap_hours * HOUR_MS), top_n=cand.covisit_top_n)
        counts[f"covisit_items_{tag}"] = write_covisitation(covisit, out)
        log.info("features as of %s: %d users, %d items with co-visited items", tag, counts[f"users_{tag}"],
                 counts[f"covisit_items_{tag}"])
    # An all-anonymous shop has no user features, legitimately; with known users, none is a bug.
    known = events.where(F.col("user_id").isNotNull() & (F.col("timestamp") < interval.as_of("serve"))).limit(1)
    min_users = 1 if known.count() else 0
    events.unpersist()
    items.unpersist()
    _quality_gate(cfg, interval, min_users)
    return counts


def _quality_gate(cfg: Config, interval: Interval, min_users: int = 1) -> None:
    """The newest user features must pass their suite before any model is trained on them."""
    import pandas as pd

    from jobs import expectations

    users = pd.read_parquet(layout.features_dir(interval.artifact_dir, "serve") / "users.parquet")
    users = users.drop(columns=["category_hours", "recent"])  # arrays, like category_share: nothing for GX
    result = expectations.validate_frame(users, "features", f"features-{interval.interval_id}", cfg.layout.gx,
                                         cfg.layout.data_docs, min_users=min_users)
    expectations.gate(result)
