"""Embeddings: Spark ML ALS on implicit feedback -> one vector space for users and items.

Fitted on events before the ``train`` cut-off so offline evaluation and ranker training
never see the interactions they are judged on. Anonymous sessions join as pseudo-users: they
sharpen item vectors (items bought together) but are not saved as users.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from blink.config import Config
from blink.model import EMBEDDINGS
from jobs.run import Run

log = logging.getLogger(__name__)
# Implicit confidence per event type: a purchase says more than a view.
EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 5.0, "rating": 3.0}


def transform(events: Any, train_end_ms: int) -> Any:
    """(user_key, item_id, weight) rows: summed confidence per user-item pair."""
    from pyspark.sql import functions as F

    weight = F.coalesce(*[F.when(F.col("event_type") == t, F.lit(w)) for t, w in EVENT_WEIGHTS.items()],
                        F.lit(0.0))
    user_key = F.coalesce(F.col("user_id"), F.concat(F.lit("\x00anon:"), F.col("session_id")))
    return (events.where((F.col("timestamp") < train_end_ms) & F.col("item_id").isNotNull())
            .select(user_key.alias("user_key"), "item_id", weight.alias("w"))
            .where(F.col("w") > 0).groupBy("user_key", "item_id").agg(F.sum("w").alias("w")))


def run(spark: Any, cfg: Config, interval: Run) -> dict[str, int]:
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.recommendation import ALS

    events = spark.read.parquet(str(cfg.var / "lake" / "events"))
    pairs = transform(events, interval.as_of("train"))
    indexed = StringIndexer(inputCols=["user_key", "item_id"], outputCols=["u", "i"],
                            stringOrderType="alphabetAsc").fit(pairs).transform(pairs).cache()
    if indexed.limit(1).count() == 0:
        raise ValueError("no interactions before the train cut-off: lower split.label_hours / "
                         "split.test_hours or ingest more history")
    e = cfg.embeddings
    als = ALS(rank=e.dim, maxIter=e.iterations, regParam=e.reg, alpha=e.alpha, implicitPrefs=True,
              userCol="u", itemCol="i", ratingCol="w", seed=42, coldStartStrategy="drop",
              nonnegative=False)
    fitted = als.fit(indexed)
    users_map = indexed.select("u", "user_key").distinct()
    items_map = indexed.select("i", "item_id").distinct()
    uf = fitted.userFactors.join(users_map, fitted.userFactors.id == users_map.u).toPandas()
    itf = fitted.itemFactors.join(items_map, fitted.itemFactors.id == items_map.i).toPandas()
    uf = uf[~uf["user_key"].str.startswith("\x00anon:")].sort_values("user_key")
    itf = itf.sort_values("item_id")
    np.savez(
        interval.artifact_dir / EMBEDDINGS,
        item_ids=itf["item_id"].to_numpy(str), item_vectors=np.stack(itf["features"]).astype(np.float32),
        user_ids=uf["user_key"].to_numpy(str), user_vectors=np.stack(uf["features"]).astype(np.float32),
    )
    indexed.unpersist()
    log.info("embeddings: %d users, %d items, dim %d", len(uf), len(itf), e.dim)
    return {"users": len(uf), "items": len(itf), "dim": e.dim}
