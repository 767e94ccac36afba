"""Ranker: XGBoost learning-to-rank on candidates from the retrieval stage itself.

Training rows are built with the serving code (blink.pipeline + blink.feature_matrix) over the
state as of the ``train`` cut-off, spread over Spark partitions; labels are the graded
interactions in [train, eval). Groups are users; users with no positive are dropped
(they teach a ranking objective nothing). Each group is ranked for the request the user
actually made next: the time and device of their first event after the cut-off.

Precompute and evaluation rank without a device, and a missing value is a value the ranker
must have seen: a fixed share of the groups (by a hash of the user id) is trained without it.
"""

from __future__ import annotations

import json
import logging
import random
import zlib
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np

from blink import layout
from blink.candidates import SourceSizes
from blink.config import Config
from blink.errors import InsufficientData
from blink.feature_matrix import NAMES, Context
from jobs import labels, session_rows
from jobs.interval import Interval
from jobs.spark import cached_model, get_spark, map_partitions

log = logging.getLogger(__name__)


# (user, {item: grade}, request time, request device): one training request.
Request = tuple[str, dict[str, int], int, str | None]
NO_DEVICE_SHARE = 0.5  # of groups trained without the request's device


def training_rows(directory: str, sizes: SourceSizes,
                  rows: Iterator[Request]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(features, grades) per user: one ranking group, built from exactly the candidates and
    features the serving pipeline would produce for that user. Runs inside Spark workers."""
    from blink.pipeline import Pipeline

    model = cached_model(directory, "train", False)
    pipe = Pipeline(model, sizes=sizes)
    for user_id, truth, now_ms, device in rows:
        q = pipe.query(user_id)
        if q is None:
            continue
        cands = pipe.candidates_for(q)
        ids = model.item_ids[cands.positions]
        y = np.array([truth.get(str(i), 0) for i in ids], np.float32)
        if y.max(initial=0) == 0:
            continue
        yield pipe.features(q, cands, Context(now_ms=now_ms, device=device)), y


def next_requests(spark: Any, lake_events: str, start_ms: int, end_ms: int) -> dict[str, tuple[int, str | None]]:
    """user -> (time, device) of the request each user made first in [start_ms, end_ms).

    The device is dropped for NO_DEVICE_SHARE of the users, chosen by a hash of the id.
    """
    from pyspark.sql import functions as F

    rows = (spark.read.parquet(lake_events)
            .where((F.col("timestamp") >= start_ms) & (F.col("timestamp") < end_ms) & F.col("user_id").isNotNull())
            .groupBy("user_id").agg(F.min("timestamp").alias("t"), F.min_by("device", "timestamp").alias("device"))
            .collect())
    return {r["user_id"]: (int(r["t"]), None if _share(r["user_id"]) < NO_DEVICE_SHARE else r["device"])
            for r in rows}


def _share(user_id: str) -> float:
    """A fixed pseudo-random number in [0, 1) per user."""
    return zlib.crc32(user_id.encode()) / 2**32


def run(cfg: Config, interval: Interval) -> dict[str, Any]:
    spark = get_spark(cfg)
    import xgboost as xgb

    directory = str(interval.artifact_dir)
    lake, start, end = str(cfg.layout.table("events")), interval.as_of("train"), interval.as_of("eval")
    truth = labels.window(spark, lake, start, end)
    request = next_requests(spark, lake, start, end)
    users = sorted(truth)
    random.Random(13).shuffle(users)
    users = users[: cfg.ranker.max_train_users]
    sizes = SourceSizes.from_config(cfg, cfg.ranker.train_candidates)
    fn = partial(training_rows, directory, sizes)
    groups = map_partitions(spark, [(u, truth[u], *request[u]) for u in users], fn)
    if len(groups) < 10:
        raise InsufficientData(f"only {len(groups)} users have a positive among their candidates; "
                         "need more history or a larger split.label_hours")
    # Session requests too (anonymous prefix -> next items), so the ranker learns to follow the
    # session when user features are missing instead of falling back on popularity.
    sessions = session_rows.label_sessions(spark, lake, start, end, cfg.ranker.max_train_sessions)
    fn_sessions = partial(session_rows.session_groups, directory, start, sizes)
    session_groups = map_partitions(spark, sessions, fn_sessions) if sessions else []
    groups = groups + session_groups
    random.Random(17).shuffle(groups)  # user and session groups in both train and validation
    n_valid = max(1, len(groups) // 10)
    train, valid = groups[n_valid:], groups[:n_valid]

    def dmatrix(part: list[tuple[np.ndarray, np.ndarray]]) -> Any:
        x = np.vstack([g[0] for g in part])
        y = np.concatenate([g[1] for g in part])
        qid = np.concatenate([np.full(len(g[1]), j) for j, g in enumerate(part)])
        return xgb.DMatrix(x, label=y, qid=qid, feature_names=NAMES, missing=np.nan)

    r = cfg.ranker
    params = {"objective": r.objective, "eta": r.learning_rate, "max_depth": r.max_depth,
              "eval_metric": "ndcg@20", "tree_method": "hist", "lambdarank_pair_method": "topk",
              "lambdarank_num_pair_per_sample": 20, "seed": 7, "nthread": 2}
    dtrain, dvalid = dmatrix(train), dmatrix(valid)
    history: dict[str, Any] = {}
    booster = xgb.train(params, dtrain, num_boost_round=r.n_estimators, evals=[(dvalid, "valid")],
                        evals_result=history, early_stopping_rounds=20, verbose_eval=False)
    best = booster.best_iteration
    booster = booster[: best + 1]  # keep only the trees early stopping chose
    booster.save_model(str(interval.artifact_dir / layout.RANKER))
    gain = {k: v for k, v in booster.get_score(importance_type="gain").items() if isinstance(v, float)}
    top = sorted(gain.items(), key=lambda kv: -kv[1])
    (interval.artifact_dir / layout.RANKER_IMPORTANCE).write_text(json.dumps(top, indent=1))
    summary = {"groups": len(groups), "session_groups": len(session_groups), "rows": int(dtrain.num_row()),
               "trees": booster.num_boosted_rounds(),
               "valid_ndcg@20": float(history["valid"]["ndcg@20"][best]),
               "top_features": [k for k, _ in top[:5]]}
    log.info("ranker: %s", summary)
    return summary
