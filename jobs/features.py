"""Features: user and item aggregates over time windows, as of each cut-off of the split.

The columns produced are exactly blink.features.USER_FEATURES / ITEM_FEATURES (a test
checks it, and tests/test_features_parity.py recomputes them independently); serving looks
them up by position from the published artifact. Per user it also writes two arrays
aligned with ``categories`` (meta.json): the share of events in each category and the hours
since the user last touched it. Also writes the trending list (the fallback) and each
user's consumption history (filtered at serve time).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from blink.config import Config
from blink.features import DAY_MS, DAY_PARTS, DEVICES, EVENT_TYPES, HOUR_MS, TRENDS, WINDOWS
from blink.model import features_dir
from jobs.run import Run

log = logging.getLogger(__name__)
TRENDING_SIZE = 500
AS_OF_TAGS = ("train", "eval", "serve")
WEEK_MS = WINDOWS["7d"]


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
            .withColumn("u_cart_per_view", F.try_divide("u_add_to_cart", "u_view")))
    return _with_categories(user, known, as_of_ms, categories)


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
    from blink.features import ITEM_FEATURES, USER_FEATURES

    out.mkdir(parents=True, exist_ok=True)
    user_cols = ["user_id", *[f.name for f in USER_FEATURES], "category_share", "category_hours", "history"]
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


def run(spark: Any, cfg: Config, interval: Run) -> dict[str, int]:
    """Write features/<as_of>/{users,items}.parquet + meta.json for each cut-off."""
    lake = cfg.var / "lake"
    events = spark.read.parquet(str(lake / "events")).drop("date", "hour", "batch").cache()
    items = spark.read.parquet(str(lake / "items")).cache()
    categories = categories_of(items)
    counts = {}
    for tag in AS_OF_TAGS:
        as_of = interval.as_of(tag)
        tables = transform(events, items, as_of, categories)
        counts[f"users_{tag}"] = write(*tables, features_dir(interval.artifact_dir, tag), as_of, categories)
        log.info("features as of %s: %d users", tag, counts[f"users_{tag}"])
    events.unpersist()
    items.unpersist()
    _quality_gate(cfg, interval)
    return counts


def _quality_gate(cfg: Config, interval: Run) -> None:
    """The newest user features must pass their suite before any model is trained on them."""
    import pandas as pd

    from jobs import quality

    users = pd.read_parquet(features_dir(interval.artifact_dir, "serve") / "users.parquet")
    users = users.drop(columns=["category_hours"])  # an array, like category_share: nothing for GX
    result = quality.validate_frame(users, "features", f"features-{interval.interval_id}", cfg.var / "gx",
                                    cfg.var / "reports" / "data_docs")
    quality.gate(result)
