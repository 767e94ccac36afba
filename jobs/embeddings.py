"""Embeddings: implicit-feedback ALS, tuned by measurement, in one vector space for users and items.

Hyperparameters are chosen on a validation cut *before* the train cut-off (fit on events before
``train - label``, score NDCG@20 on the label-length window after it), so ranker training and
offline evaluation never see the interactions they are judged on. The grid, its scores and the
choice go to ``embeddings_tuning.json`` and the evaluation report.

Then the winner is refitted on everything before the ``train`` cut-off: those item vectors are
the retrieval space of this version. Users are *folded in* at each later cut-off (``eval`` and
``serve``): a least-squares solve per user against the fixed item vectors with everything the
user did before that cut-off (implicit's ``recalculate_user``), so nobody is judged, or served,
on a vector weeks old. Anonymous sessions join the fit as pseudo-users (they sharpen item
vectors: items taken together) but are not saved as users.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from blink import layout
from blink.config import Config, EmbeddingsConfig
from blink.errors import InsufficientData
from jobs import baselines, protocol
from jobs.interval import Interval
from jobs.spark import get_spark

log = logging.getLogger(__name__)
ANON = "\x00anon:"  # prefix of pseudo-users made from anonymous sessions


@dataclass(frozen=True)
class Weighting:
    """How events become implicit confidence: per event type, and which ratings count."""

    binary: bool  # every counted event weighs 1 (else the configured per-type weights)
    min_rating: float | None  # rating events below this do not count (None: all count)


def events_frame(cfg: Config, before_ms: int) -> pd.DataFrame:
    """The lake's item events before ``before_ms``: user_key, item_id, event_type, value, timestamp."""
    from pyspark.sql import functions as F

    spark = get_spark(cfg)
    user_key = F.coalesce(F.col("user_id"), F.concat(F.lit(ANON), F.col("session_id")))
    return (spark.read.parquet(str(cfg.layout.table("events")))
            .where((F.col("timestamp") < before_ms) & F.col("item_id").isNotNull())
            .select(user_key.alias("user_id"), "item_id", "event_type", "value", "timestamp")
            .toPandas())


def weigh(events: pd.DataFrame, weights: dict[str, float], how: Weighting) -> pd.DataFrame:
    """Interactions (user_id, item_id, timestamp, weight) under one weighting; zero weights dropped."""
    w = events["event_type"].map(weights).fillna(0.0).to_numpy(np.float64)
    is_rating = (events["event_type"] == "rating").to_numpy()
    value = pd.to_numeric(events["value"], errors="coerce").to_numpy(np.float64)
    if how.min_rating is not None:
        w = np.where(is_rating & ~(value >= how.min_rating), 0.0, w)
    if how.binary:
        w = (w > 0).astype(np.float64)
    else:  # a rating says how much: 5 stars is worth more than 3 (unrated: the type's weight)
        w = np.where(is_rating & np.isfinite(value) & (w > 0), value, w)
    out = events.assign(weight=w)[["user_id", "item_id", "timestamp", "weight"]]
    return out[out["weight"] > 0]


def tune(events: pd.DataFrame, e: EmbeddingsConfig, val_cut_ms: int,
         train_cut_ms: int) -> tuple[protocol.Tuned, Weighting, list[dict[str, Any]]]:
    """Grid over factors / regularization / alpha, then over the weighting at the best point."""
    grid: dict[str, list[Any]] = {"factors": e.grid_factors or [e.dim],
                                  "regularization": e.grid_regularization or [e.reg],
                                  "alpha": e.grid_alpha or [e.alpha]}
    fixed: dict[str, Any] = {"iterations": e.iterations, "threads": e.threads}
    default = Weighting(binary=False, min_rating=None)
    tuned = protocol.tune_als(weigh(events, e.event_weights, default), val_cut_ms, train_cut_ms, grid, **fixed)
    weighting, rows = default, [{**r, **asdict(default)} for r in tuned.grid]
    has_ratings = bool((events["event_type"] == "rating").any())
    variants = [Weighting(True, None)] + ([Weighting(False, e.min_rating), Weighting(True, e.min_rating)]
                                          if has_ratings and e.min_rating is not None else [])
    best_score = max(r["objective"] for r in tuned.grid)
    point = {key: [value] for key, value in tuned.best.items()}
    for how in variants if e.tune_weighting else []:
        try:
            trial = protocol.tune_als(weigh(events, e.event_weights, how), val_cut_ms, train_cut_ms, point,
                                       **fixed)
        except ValueError as exc:  # e.g. a threshold that leaves no validation users
            log.info("weighting %s not usable: %s", how, exc)
            continue
        rows += [{**r, **asdict(how)} for r in trial.grid]
        if trial.grid[0]["objective"] > best_score:
            tuned, weighting, best_score = trial, how, trial.grid[0]["objective"]
    return tuned, weighting, rows


def fold_in(model: Any, items: pd.Index, interactions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(user ids, vectors): each known user solved against the fixed item vectors."""
    data = baselines.user_item_matrix(interactions[~interactions["user_id"].str.startswith(ANON)], items)
    rows = data.matrix.astype(np.float32)
    has = np.flatnonzero(rows.getnnz(axis=1) > 0)
    vectors = model.recalculate_user(has, rows[has]) if len(has) else np.empty((0, model.factors))
    return data.users[has].to_numpy(str), np.asarray(vectors, np.float32)


def run(cfg: Config, interval: Interval) -> dict[str, Any]:
    e = cfg.embeddings
    train_cut = interval.as_of("train")
    val_cut = train_cut - cfg.split.label_hours * 3_600_000
    events = events_frame(cfg, interval.as_of("serve"))
    if not (events["timestamp"] < val_cut).any():
        raise InsufficientData(
            f"no interactions before the validation cut ({pd.Timestamp(val_cut, unit='ms')}): the data must "
            f"reach back more than split.test_hours + 2 x split.label_hours "
            f"({cfg.split.test_hours} + 2 x {cfg.split.label_hours} h) before the run's date; shrink them "
            "(e.g. BLINK_SPLIT__LABEL_HOURS) or ingest more history")
    started = time.perf_counter()
    with threadpool_limits(1, "blas"):  # implicit parallelises itself; BLAS threads would fight it
        tuned, weighting, grid = tune(events, e, val_cut, train_cut)
    als = cast(baselines.ALS, tuned.system)
    items = als.data.items
    train_users = ~als.data.users.str.startswith(ANON)
    np.savez(interval.artifact_dir / layout.EMBEDDINGS,
             item_ids=items.to_numpy(str), item_vectors=np.asarray(als.model.item_factors, np.float32),
             user_ids=als.data.users[train_users].to_numpy(str),
             user_vectors=np.asarray(als.model.user_factors, np.float32)[train_users])
    weighted = weigh(events, e.event_weights, weighting)
    folded = {}
    for tag in ("eval", "serve"):
        with threadpool_limits(1, "blas"):
            ids, vectors = fold_in(als.model, items, weighted[weighted["timestamp"] < interval.as_of(tag)])
        np.savez(layout.user_vectors(interval.artifact_dir, tag), user_ids=ids, user_vectors=vectors)
        folded[tag] = len(ids)
    choice = {**tuned.best, **asdict(weighting)}
    report = {"chosen": choice, "grid": grid, "validation_window_ms": [val_cut, train_cut],
              "objective": "NDCG@20 pooled over known users and new users after 3 clicks",
              "seconds": round(time.perf_counter() - started, 2)}
    (interval.artifact_dir / layout.EMBEDDINGS_TUNING).write_text(json.dumps(report, indent=1, default=str))
    log.info("embeddings: chose %s from %d grid points; %d items", choice, len(grid), len(items))
    return {"items": len(items), "users_train": int(train_users.sum()), "users_folded": folded, "chosen": choice}
