"""Ground truth for a time window: what each user interacted with, graded by intent.

Used by ranker training (labels from the interactions that followed the train cut-off) and
by offline evaluation (the held-out test window), so both read "relevance" the same way.
"""

from __future__ import annotations

from typing import Any

GRADES = {"view": 1, "click": 1, "rating": 2, "add_to_cart": 2, "purchase": 3}


def window(spark: Any, lake_events: str, start_ms: int, end_ms: int) -> dict[str, dict[str, int]]:
    """user_id -> {item_id: best grade} for known users' events in [start_ms, end_ms)."""
    from pyspark.sql import functions as F

    grade = F.coalesce(*[F.when(F.col("event_type") == t, F.lit(g)) for t, g in GRADES.items()], F.lit(0))
    rows = (spark.read.parquet(lake_events)
            .where((F.col("timestamp") >= start_ms) & (F.col("timestamp") < end_ms)
                   & F.col("user_id").isNotNull() & F.col("item_id").isNotNull())
            .groupBy("user_id", "item_id").agg(F.max(grade).alias("g")).where(F.col("g") > 0)
            .collect())
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["user_id"], {})[r["item_id"]] = int(r["g"])
    return out
