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
from typing import Any

import pandas as pd

from blink.config import Config
from blink.features import Context
from jobs.head import HEAD_FILE
from jobs.run import Run
from jobs.spark import cached_model, map_partitions

log = logging.getLogger(__name__)
LISTS_FILE = "head_lists.parquet"
SIMILAR_FILE = "similar_lists.parquet"


def recommend_partition(directory: str, as_of_ms: int, length: int, candidates: int,
                        users: Iterator[str]) -> Iterator[tuple[str, str]]:
    from blink.pipeline import Pipeline

    pipe = Pipeline(cached_model(directory, "serve"), candidates)
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


def head_items(cfg: Config, interval: Run) -> list[str]:
    """The most popular fraction of the retrievable items (by events before the as-of time)."""
    import numpy as np

    from blink.features import ITEM_INDEX

    model = cached_model(str(interval.artifact_dir), "serve", False)
    events = np.nan_to_num(model.item_features[:, ITEM_INDEX["i_events"]])
    n = int(np.ceil(len(events) * cfg.head.item_fraction))
    return [str(model.item_ids[j]) for j in np.argsort(-events, kind="stable")[:n]]


def run(spark: Any, cfg: Config, interval: Run) -> dict[str, float]:
    users = json.loads((interval.artifact_dir / HEAD_FILE).read_text())
    started = time.perf_counter()
    fn = partial(recommend_partition, str(interval.artifact_dir), interval.as_of_ms,
                 cfg.head.list_length, cfg.retrieval.candidates)
    rows = map_partitions(spark, users, fn)
    seconds = time.perf_counter() - started
    pd.DataFrame(rows, columns=["user_id", "items"]).to_parquet(interval.artifact_dir / LISTS_FILE, index=False)
    _quality_gate(cfg, interval)
    similar = map_partitions(spark, head_items(cfg, interval),
                             partial(similar_partition, str(interval.artifact_dir), cfg.head.list_length))
    pd.DataFrame(similar, columns=["item_id", "items"]).to_parquet(interval.artifact_dir / SIMILAR_FILE, index=False)
    rate = len(rows) / seconds if seconds else 0.0
    log.info("precompute: %d head lists in %.1fs (%.0f users/s)", len(rows), seconds, rate)
    return {"lists": len(rows), "similar_lists": len(similar), "seconds": round(seconds, 2),
            "users_per_s": round(rate, 1)}


def _quality_gate(cfg: Config, interval: Run) -> None:
    """Every head list: long enough, distinct, nothing consumed, sorted, versioned -- or no publish."""
    from jobs import quality

    lists = pd.read_parquet(interval.artifact_dir / LISTS_FILE)
    model = cached_model(str(interval.artifact_dir), "serve", False)
    wanted = set(lists["user_id"])
    history = {u: set(model.consumed(u)) for u in wanted}
    k = min(cfg.serving.max_k, cfg.head.list_length)
    frame = quality.recommendations_frame(lists, history, k, interval.version)
    result = quality.validate_frame(frame, "recommendations", f"recommendations-{interval.interval_id}",
                                    cfg.var / "gx", cfg.var / "reports" / "data_docs", k=k)
    quality.gate(result)
