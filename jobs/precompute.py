"""Precompute: the serving pipeline, run by Spark over the head users' partitions.

Each Python worker loads the version once and calls blink.pipeline.Pipeline.recommend --
the very function the tail path calls -- with the context of the version's as-of time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from functools import partial

import pandas as pd

from blink import layout
from blink.candidates import SourceSizes
from blink.config import Config
from blink.feature_matrix import Context
from jobs.interval import Interval
from jobs.spark import cached_model, get_spark, map_partitions

log = logging.getLogger(__name__)


def recommend_partition(directory: str, as_of_ms: int, length: int, sizes: SourceSizes,
                        users: Iterator[str]) -> Iterator[tuple[str, str]]:
    from blink.pipeline import Pipeline

    pipe = Pipeline(cached_model(directory, "serve"), sizes=sizes)
    ctx = Context(now_ms=as_of_ms)
    for user_id in users:
        items = pipe.recommend(user_id, length, ctx)
        if items:
            yield user_id, json.dumps(items)


def similar_partition(directory: str, length: int, items: Iterator[str]) -> Iterator[tuple[str, str]]:
    from blink.pipeline import Pipeline

    pipe = Pipeline(cached_model(directory, "serve", False))
    for item_id in items:
        found = pipe.similar(item_id, length)
        if found:
            yield item_id, json.dumps(found)


def head_items(cfg: Config, interval: Interval) -> list[str]:
    """The most popular fraction of the retrievable items (by events before the as-of time)."""
    import numpy as np

    from blink.feature_matrix import ITEM_INDEX

    model = cached_model(str(interval.artifact_dir), "serve", False)
    events = np.nan_to_num(model.item_features[:, ITEM_INDEX["i_events"]])
    n = int(np.ceil(len(events) * cfg.head.item_fraction))
    return [str(model.item_ids[j]) for j in np.argsort(-events, kind="stable")[:n]]


def run(cfg: Config, interval: Interval) -> dict[str, float]:
    spark = get_spark(cfg)
    users = json.loads((interval.artifact_dir / layout.HEAD_USERS).read_text())
    started = time.perf_counter()
    fn = partial(recommend_partition, str(interval.artifact_dir), interval.as_of_ms,
                 cfg.head.list_length, SourceSizes.from_config(cfg))
    rows = map_partitions(spark, users, fn)
    seconds = time.perf_counter() - started
    pd.DataFrame(rows, columns=["user_id", "items"]).to_parquet(interval.artifact_dir / layout.HEAD_LISTS, index=False)
    _quality_gate(cfg, interval)
    similar = map_partitions(spark, head_items(cfg, interval),
                             partial(similar_partition, str(interval.artifact_dir), cfg.head.list_length))
    similar_file = interval.artifact_dir / layout.SIMILAR_LISTS
    pd.DataFrame(similar, columns=["item_id", "items"]).to_parquet(similar_file, index=False)
    rate = len(rows) / seconds if seconds else 0.0
    log.info("precompute: %d head lists in %.1fs (%.0f users/s)", len(rows), seconds, rate)
    return {"lists": len(rows), "similar_lists": len(similar), "seconds": round(seconds, 2),
            "users_per_s": round(rate, 1)}


def _quality_gate(cfg: Config, interval: Interval) -> None:
    """Every head list: long enough, distinct, nothing consumed, sorted, versioned -- or no publish."""
    from jobs import expectations

    lists = pd.read_parquet(interval.artifact_dir / layout.HEAD_LISTS)
    model = cached_model(str(interval.artifact_dir), "serve", False)
    wanted = set(lists["user_id"])
    history = {u: set(model.consumed(u)) for u in wanted}
    k = min(cfg.serving.max_k, cfg.head.list_length)
    frame = expectations.recommendations_frame(lists, history, k, interval.version)
    result = expectations.validate_frame(frame, "recommendations", f"recommendations-{interval.interval_id}",
                                    cfg.layout.gx, cfg.layout.data_docs, k=k)
    expectations.gate(result)
