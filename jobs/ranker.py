"""Ranker: XGBoost learning-to-rank on candidates from the retrieval stage itself.

Training rows are built with the serving code (blink.pipeline + blink.feature_matrix) over the
state as of the ``train`` cut-off, spread over Spark partitions; labels are the graded
interactions in [train, eval). Groups are users; users with no positive are dropped
(they teach a ranking objective nothing). Each group is ranked for the request the user
actually made next: the time and device of their first event after the cut-off.

The ranker is served only where it earns it: per request kind (known user / session), its
NDCG on held-out groups is compared with the candidates' fused source order (weighted
reciprocal-rank fusion, weights tuned on the training groups), and the better one is what the
version serves (fusion.json). A ranker trained on too little data therefore cannot make the
answers worse than the sources it merges.

Precompute and evaluation rank without a device, and a missing value is a value the ranker
must have seen: a fixed share of the groups (by a hash of the user id) is trained without it.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import zlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np

from blink import layout
from blink.candidates import KINDS, SOURCES, Fusion, SourceSizes, fused
from blink.config import Config
from blink.errors import InsufficientData
from blink.feature_matrix import NAMES, Context
from jobs import labels, session_rows
from jobs.interval import Interval
from jobs.spark import cached_model, get_spark, map_partitions

log = logging.getLogger(__name__)


# (user, {item: grade}, request time, request device): one training request.
Request = tuple[str, dict[str, int], int, str | None]
Group = tuple[np.ndarray, np.ndarray]  # (features, grades) of one ranking group
NO_DEVICE_SHARE = 0.5  # of groups trained without the request's device
MIN_GROUPS = 10  # fewer ranking groups teach nothing and leave no held-out groups
GATE_K = 20  # the list length quality is judged at
FUSION_GRID = (0.0, 0.5, 1.0, 2.0)  # per source weight
SOURCE_RANKS = [NAMES.index(f"x_src_{s}_rank") for s in SOURCES]


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


def ndcg(scores: np.ndarray, grades: np.ndarray, k: int = GATE_K) -> float:
    """NDCG@k with exponential gain (XGBoost's rank:ndcg metric), ties broken by row order."""
    top = grades[np.argsort(-scores, kind="stable")[:k]]
    ideal = np.sort(grades)[::-1][:k]
    discount = 1 / np.log2(np.arange(2, k + 2))
    best = float(((2 ** ideal - 1) * discount[: len(ideal)]).sum())
    return float(((2 ** top - 1) * discount[: len(top)]).sum()) / best if best else 0.0


def _mean(groups: list[Group], score: Callable[[np.ndarray], np.ndarray]) -> float:
    return float(np.mean([ndcg(score(x), y) for x, y in groups])) if groups else float("nan")


def tune_fusion(groups: list[Group]) -> tuple[tuple[float, ...], float]:
    """The source weights whose fused order has the best mean NDCG on ``groups``; equal
    weights unless another point of the grid is strictly better."""
    best: tuple[float, ...] = (1.0,) * len(SOURCES)
    best_ndcg = _mean(groups, lambda x: fused(x[:, SOURCE_RANKS], best))
    for weights in itertools.product(FUSION_GRID, repeat=len(SOURCES)):
        if any(weights):
            value = _mean(groups, lambda x, w=weights: fused(x[:, SOURCE_RANKS], w))  # type: ignore[misc]
            if value > best_ndcg + 1e-9:
                best, best_ndcg = weights, value
    return best, best_ndcg


def choose(booster: Any, train: list[tuple[str, Group]], holdout: list[tuple[str, Group]],
           min_gain: float) -> tuple[Fusion, dict[str, dict[str, Any]]]:
    """Per request kind: tune the fusion weights on the training groups, then serve the ranker
    only if it beats that fused order on the held-out groups (which early stopping never saw)
    by more than ``min_gain`` NDCG. No held-out group of a kind: no evidence, the fused order."""
    weights: dict[str, tuple[float, ...]] = {}
    use: dict[str, bool] = {}
    gate: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        fit = [g for k, g in train if k == kind]
        test = [g for k, g in holdout if k == kind]
        weights[kind] = tune_fusion(fit)[0] if fit else (1.0,) * len(SOURCES)
        fused_ndcg = _mean(test, lambda x, w=weights[kind]: fused(x[:, SOURCE_RANKS], w))  # type: ignore[misc]
        ranker_ndcg = _mean(test, lambda x: np.asarray(booster.inplace_predict(x)))
        use[kind] = bool(test) and ranker_ndcg > fused_ndcg + min_gain
        gate[kind] = {"holdout_groups": len(test), "weights": list(weights[kind]),
                      f"fused_ndcg@{GATE_K}": round(fused_ndcg, 4), f"ranker_ndcg@{GATE_K}": round(ranker_ndcg, 4)}
    return Fusion(weights, use), gate


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
    # Session requests too (anonymous prefix -> next items), so the ranker learns to follow the
    # session when user features are missing instead of falling back on popularity.
    sessions = session_rows.label_sessions(spark, lake, start, end, cfg.ranker.max_train_sessions)
    fn_sessions = partial(session_rows.session_groups, directory, start, sizes)
    session_groups = map_partitions(spark, sessions, fn_sessions) if sessions else []
    tagged = [("user", g) for g in groups] + [("session", g) for g in session_groups]
    if len(tagged) < MIN_GROUPS:
        raise InsufficientData(f"only {len(groups)} users and {len(session_groups)} session prefixes have a "
                               f"positive among their candidates (need {MIN_GROUPS}); "
                               "need more history or a larger split.label_hours")
    random.Random(17).shuffle(tagged)  # user and session groups in every part
    n = len(tagged)
    holdout, valid, train = tagged[: n * 15 // 100], tagged[n * 15 // 100: n * 30 // 100], tagged[n * 30 // 100:]

    def dmatrix(part: list[tuple[str, Group]]) -> Any:
        x = np.vstack([g[0] for _, g in part])
        y = np.concatenate([g[1] for _, g in part])
        qid = np.concatenate([np.full(len(g[1]), j) for j, (_, g) in enumerate(part)])
        return xgb.DMatrix(x, label=y, qid=qid, feature_names=NAMES, missing=np.nan)

    r = cfg.ranker
    params = {"objective": r.objective, "eta": r.learning_rate, "max_depth": r.max_depth,
              "min_child_weight": r.min_child_weight, "subsample": 0.8, "colsample_bytree": 0.8,
              "eval_metric": f"ndcg@{GATE_K}", "tree_method": "hist", "lambdarank_pair_method": "topk",
              "lambdarank_num_pair_per_sample": 20, "seed": 7, "nthread": 2}
    dtrain, dvalid = dmatrix(train), dmatrix(valid or train)
    history: dict[str, Any] = {}
    booster = xgb.train(params, dtrain, num_boost_round=r.n_estimators, evals=[(dvalid, "valid")],
                        evals_result=history, early_stopping_rounds=20, verbose_eval=False)
    best = booster.best_iteration
    booster = booster[: best + 1]  # keep only the trees early stopping chose
    booster.save_model(str(interval.artifact_dir / layout.RANKER))
    fusion, gate = choose(booster, train, holdout, r.min_gain)
    (interval.artifact_dir / layout.FUSION).write_text(json.dumps({**fusion.to_json(), "gate": gate}, indent=1))
    gain = {k: v for k, v in booster.get_score(importance_type="gain").items() if isinstance(v, float)}
    top = sorted(gain.items(), key=lambda kv: -kv[1])
    (interval.artifact_dir / layout.RANKER_IMPORTANCE).write_text(json.dumps(top, indent=1))
    summary = {"groups": len(tagged), "session_groups": len(session_groups), "rows": int(dtrain.num_row()),
               "trees": booster.num_boosted_rounds(),
               f"valid_ndcg@{GATE_K}": float(history["valid"][f"ndcg@{GATE_K}"][best]),
               "ranker_used": fusion.ranker, "gate": gate, "top_features": [k for k, _ in top[:5]]}
    log.info("ranker: %s", summary)
    return summary
