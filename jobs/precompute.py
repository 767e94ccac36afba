"""Precompute: the serving pipeline, run by Spark over the head users' partitions.

Each Python worker loads the version once and calls blink.pipeline.Pipeline.recommend_many --
the tail path's Pipeline.recommend for many users at once: each user's candidates as for one
request, then one XGBoost call per ``precompute.batch_users`` users -- with the context of the
version's as-of time. One XGBoost thread per Spark core (the model loads with nthread=1).

An hourly version refreshes the latest fit, and most head users did nothing in the hour. A
head user whose own inputs are the same as in the previous version of the same fit -- the same
history and recent items (no new event) and the same vector -- keeps that version's list
(:func:`carry_over`) until the list is ``precompute.max_age_hours`` old; only the others are
computed again. A carried list is what the tail path answered at the version that computed it
(``computed_ms`` in head_lists.parquet), so it does not see the hour's new trending and
co-visitation state: the bound says for how long that may be. A daily run (a new fit) computes
every list.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd

from blink import layout
from blink.candidates import SourceSizes
from blink.config import Config
from blink.feature_matrix import HOUR_MS, Context
from blink.model import Model
from jobs.interval import Interval
from jobs.spark import cached_model, get_spark, map_partitions

log = logging.getLogger(__name__)

COLUMNS = ["user_id", "items", "computed_ms", "computed_with"]


def recommend_partition(directory: str, as_of_ms: int, length: int, sizes: SourceSizes, batch: int,
                        users: Iterator[str]) -> Iterator[tuple[str, str]]:
    from blink.pipeline import Pipeline

    pipe = Pipeline(cached_model(directory, "serve"), sizes=sizes)
    ctx = Context(now_ms=as_of_ms)
    while chunk := list(islice(users, batch)):
        for user_id, items in zip(chunk, pipe.recommend_many(chunk, length, ctx), strict=True):
            if items:
                yield user_id, json.dumps(items)


def similar_partition(directory: str, length: int, items: Iterator[str]) -> Iterator[tuple[str, str]]:
    from blink.pipeline import Pipeline

    pipe = Pipeline(cached_model(directory, "serve"))  # the model recommend_partition loaded
    for item_id in items:
        found = pipe.similar(item_id, length)
        if found:
            yield item_id, json.dumps(found)


def head_items(cfg: Config, interval: Interval) -> list[str]:
    """The most popular fraction of the retrievable items (by events before the as-of time)."""
    from blink.feature_matrix import ITEM_INDEX

    model = cached_model(str(interval.artifact_dir), "serve", False)
    events = np.nan_to_num(model.item_features[:, ITEM_INDEX["i_events"]])
    n = int(np.ceil(len(events) * cfg.head.item_fraction))
    return [str(model.item_ids[j]) for j in np.argsort(-events, kind="stable")[:n]]


def computed_with(cfg: Config) -> str:
    """The settings a list depends on besides the version's files: a list computed with others
    is never carried over."""
    return json.dumps({"list_length": cfg.head.list_length, "sizes": asdict(SourceSizes.from_config(cfg))},
                      sort_keys=True)


def fit_of(directory: Path) -> str:
    """The fitted (daily) version whose models a version serves: its own name for a daily one."""
    fitted = directory / layout.FITTED_FROM
    return str(json.loads(fitted.read_text())["version"]) if fitted.exists() else directory.name


def previous_version(cfg: Config, interval: Interval) -> Path | None:
    """The newest complete version (manifest written) older than this one that serves the same
    fit and has head lists; None for a daily run or the first hourly run after a failed one."""
    fit = fit_of(interval.artifact_dir)
    found = []
    for d in cfg.layout.artifacts.iterdir():
        manifest = d / layout.MANIFEST
        if d == interval.artifact_dir or not manifest.exists() or not (d / layout.HEAD_LISTS).exists():
            continue
        as_of = int(json.loads(manifest.read_text())["as_of_ms"])
        if as_of < interval.as_of_ms and fit_of(d) == fit:
            found.append((as_of, d.name, d))
    return max(found)[2] if found else None


def unchanged_users(previous: Model, current: Model, users: Sequence[str]) -> set[str]:
    """The users whose own inputs are equal in both models: history, recent items and vector."""
    if not np.array_equal(previous.item_ids, current.item_ids):  # positions mean other items
        return set()
    same = set()
    for user_id in users:
        a, b = previous.user_index.get(user_id), current.user_index.get(user_id)
        if (a is not None and b is not None and np.array_equal(previous.history[a], current.history[b])
                and np.array_equal(previous.recent[a], current.recent[b])
                and np.array_equal(previous.user_vectors[a], current.user_vectors[b], equal_nan=True)):
            same.add(user_id)
    return same


def carry_over(cfg: Config, interval: Interval, users: Sequence[str]) -> pd.DataFrame:
    """The previous version's lists this version keeps (see the module doc), in COLUMNS."""
    none = pd.DataFrame(columns=COLUMNS)
    previous = previous_version(cfg, interval) if cfg.precompute.max_age_hours > 0 else None
    if previous is None:
        return none
    lists = pd.read_parquet(previous / layout.HEAD_LISTS)
    if not set(COLUMNS) <= set(lists.columns):  # written before lists were dated
        return none
    oldest_ms = interval.as_of_ms - cfg.precompute.max_age_hours * HOUR_MS
    lists = lists[lists["user_id"].isin(users) & (lists["computed_ms"] >= oldest_ms)
                  & (lists["computed_with"] == computed_with(cfg))]
    same = unchanged_users(Model.load(previous, "serve", retriever=False, ranker=False),
                           cached_model(str(interval.artifact_dir), "serve", False), list(lists["user_id"]))
    log.info("precompute: %d lists of %s can be kept", len(same), previous.name)
    return lists[lists["user_id"].isin(same)][COLUMNS].reset_index(drop=True)


def run(cfg: Config, interval: Interval) -> dict[str, float]:
    spark = get_spark(cfg)
    users = json.loads((interval.artifact_dir / layout.HEAD_USERS).read_text())
    kept = carry_over(cfg, interval, users)
    keep = set(kept["user_id"])
    todo = [u for u in users if u not in keep]
    started = time.perf_counter()
    fn = partial(recommend_partition, str(interval.artifact_dir), interval.as_of_ms,
                 cfg.head.list_length, SourceSizes.from_config(cfg), cfg.precompute.batch_users)
    rows = map_partitions(spark, todo, fn) if todo else []
    seconds = time.perf_counter() - started
    fresh = pd.DataFrame(rows, columns=["user_id", "items"]).assign(computed_ms=interval.as_of_ms,
                                                                    computed_with=computed_with(cfg))
    lists = pd.concat([fresh, kept], ignore_index=True) if len(kept) else fresh
    order = {u: j for j, u in enumerate(users)}
    lists = lists.sort_values("user_id", key=lambda s: s.map(order), ignore_index=True)
    lists.to_parquet(interval.artifact_dir / layout.HEAD_LISTS, index=False)
    _quality_gate(cfg, interval)
    similar = map_partitions(spark, head_items(cfg, interval),
                             partial(similar_partition, str(interval.artifact_dir), cfg.head.list_length))
    similar_file = interval.artifact_dir / layout.SIMILAR_LISTS
    pd.DataFrame(similar, columns=["item_id", "items"]).to_parquet(similar_file, index=False)
    rate = len(rows) / seconds if seconds else 0.0
    log.info("precompute: %d head lists computed in %.1fs (%.0f users/s), %d kept from the previous version",
             len(rows), seconds, rate, len(kept))
    return {"lists": len(lists), "computed": len(rows), "kept": len(kept), "similar_lists": len(similar),
            "seconds": round(seconds, 2), "users_per_s": round(rate, 1)}


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
