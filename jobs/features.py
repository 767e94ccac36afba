"""Features: user and item aggregates over time windows, as of each cut-off of the split.

The columns produced are exactly blink.features.USER_FEATURES / ITEM_FEATURES (a test
checks it); serving looks them up by position from the published artifact. Also writes the
trending list (the fallback) and each user's consumption history (filtered at serve time).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from blink.config import Config
from blink.features import DAY_MS, DEVICES, EVENT_TYPES, HOUR_MS, WINDOWS_DAYS
from blink.model import features_dir
from jobs.run import Run

log = logging.getLogger(__name__)
TRENDING_SIZE = 500
AS_OF_TAGS = ("train", "eval", "serve")


def transform(events: Any, items: Any, as_of_ms: int, categories: list[str]) -> tuple[Any, Any, Any]:
    """(users, items, trending) DataFrames from events strictly before ``as_of_ms``."""
    from pyspark.sql import functions as F

    ev = events.where(F.col("timestamp") < as_of_ms).join(
        items.select("item_id", "category", "price"), "item_id", "left")
    age = F.lit(as_of_ms) - F.col("timestamp")

    def count_if(cond: Any) -> Any:
        return F.sum(F.when(cond, 1).otherwise(0)).cast("double")

    known = ev.where(F.col("user_id").isNotNull())
    user_aggs = [F.count("*").cast("double").alias("u_events")]
    user_aggs += [count_if(age < d * DAY_MS).alias(f"u_events_{d}d") for d in WINDOWS_DAYS]
    user_aggs += [count_if(F.col("event_type") == t).alias(f"u_{t}") for t in EVENT_TYPES]
    user_aggs += [
        F.countDistinct("item_id").cast("double").alias("u_distinct_items"),
        F.countDistinct("session_id").cast("double").alias("u_sessions"),
        ((F.lit(as_of_ms) - F.max("timestamp")) / HOUR_MS).alias("u_hours_since_last"),
        F.avg("price").alias("u_mean_price"),
    ]
    user_aggs += [(count_if(F.col("device") == d) / F.count("*")).alias(f"u_share_{d}") for d in DEVICES]
    user_aggs += [F.collect_set("item_id").alias("history")]
    users = known.groupBy("user_id").agg(*user_aggs)
    # Category share as an array aligned with `categories` (same order in meta.json).
    per_cat = known.groupBy("user_id").pivot("category", categories).count().fillna(0)
    share = F.array(*[F.col(f"`{c}`").cast("double") for c in categories])
    users = users.join(per_cat.select("user_id", share.alias("cat_counts")), "user_id", "left")
    users = users.withColumn("category_share", F.expr("transform(cat_counts, x -> x / u_events)")).drop("cat_counts")

    item_aggs = [F.count("*").cast("double").alias("i_events")]
    item_aggs += [count_if(age < d * DAY_MS).alias(f"i_events_{d}d") for d in WINDOWS_DAYS]
    item_aggs += [
        F.countDistinct("user_id").cast("double").alias("i_users"),
        (count_if(F.col("event_type") == "purchase") / F.count("*")).alias("i_purchase_rate"),
    ]
    stats = ev.groupBy("item_id").agg(*item_aggs)
    fill = {c: 0.0 for c in ["i_events", "i_users", "i_purchase_rate"] + [f"i_events_{d}d" for d in WINDOWS_DAYS]}
    items_out = (
        items.join(stats, "item_id", "left").fillna(fill)
        .withColumn("i_trend", F.col("i_events_1d") * 7 / (F.col("i_events_7d") + 1))
        .withColumn("i_price", F.col("price"))
        .withColumn("i_age_days", (F.lit(as_of_ms) - F.col("created_at")) / DAY_MS)
    )
    # Trending: the last day counts most, the last week breaks ties and fills quiet hours.
    trending = (stats.withColumn("score", F.col("i_events_1d") + 0.1 * F.col("i_events_7d"))
                .where(F.col("score") > 0).orderBy(F.desc("score"), "item_id").limit(TRENDING_SIZE))
    return users, items_out, trending


def run(spark: Any, cfg: Config, interval: Run) -> dict[str, int]:
    """Write features/<as_of>/{users,items}.parquet + meta.json for each cut-off."""
    from blink.features import ITEM_FEATURES, USER_FEATURES

    lake = cfg.var / "lake"
    # Partition columns and the optional v2 event fields are not features (and `price` would clash
    # with the item table's price in the join): the item table owns prices.
    events = spark.read.parquet(str(lake / "events")).drop("date", "hour", "batch", "price", "referrer").cache()
    items = spark.read.parquet(str(lake / "items"))
    categories = sorted(r[0] for r in items.select("category").distinct().collect() if r[0] is not None)
    counts = {}
    for tag in AS_OF_TAGS:
        as_of = interval.as_of(tag)
        users, items_out, trending = transform(events, items, as_of, categories)
        out = features_dir(interval.artifact_dir, tag)
        out.mkdir(parents=True, exist_ok=True)
        user_cols = ["user_id", *[f.name for f in USER_FEATURES], "category_share", "history"]
        item_cols = ["item_id", "category", *[f.name for f in ITEM_FEATURES]]
        users_pd = users.select(*user_cols).toPandas()
        users_pd.to_parquet(out / "users.parquet", index=False)
        items_out.select(*item_cols).toPandas().to_parquet(out / "items.parquet", index=False)
        top = [(r["item_id"], float(r["score"])) for r in trending.collect()]
        (out / "meta.json").write_text(json.dumps({"as_of_ms": as_of, "categories": categories,
                                                   "trending": top}))
        counts[f"users_{tag}"] = len(users_pd)
        log.info("features as of %s: %d users", tag, len(users_pd))
    events.unpersist()
    _quality_gate(cfg, interval)
    return counts


def _quality_gate(cfg: Config, interval: Run) -> None:
    """The newest user features must pass their suite before any model is trained on them."""
    import pandas as pd

    from jobs import quality

    users = pd.read_parquet(features_dir(interval.artifact_dir, "serve") / "users.parquet")
    result = quality.validate_frame(users, "features", f"features-{interval.interval_id}", cfg.var / "gx",
                                    cfg.var / "reports" / "data_docs")
    quality.gate(result)
