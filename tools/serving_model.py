"""A published version at a chosen scale, built directly (no batch run), to measure serving.

The batch layer needs hours on two cores at the SPEC's size (100 k items, 500 k users); the
serving benchmark should not wait for it. This writes every file ``Model.load`` reads, with the
shapes and the statistics of the synthetic generator's world (category centroids, Pareto
popularity, users with one to three tastes, heavy-tailed histories), then publishes it the way
the ``publish`` task does. What is *real* here, because latency depends on it:

- the ScaNN index is built and tuned by the ``index`` task's own code (recall target, int8 /
  bf16 gate) on these vectors, with user vectors as queries;
- the ranker is an XGBoost model trained with the configured ``ranker`` parameters (trees,
  depth) on rows of the real feature width; its labels are synthetic, so its *answers* mean
  nothing -- only its cost does;
- head lists are computed by ``Pipeline.recommend_many`` (what the precompute task runs; the
  tail path's ``recommend`` is its one-user case) for the ``head_users`` most active users;
- co-visitation neighbours, recent items, session GRU weights have serving's exact layout.

Nothing here is used by a test of quality: ``tools/`` is imported by nothing else.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from blink import layout
from blink.config import Config
from blink.feature_matrix import ITEM_FEATURES, USER_FEATURES
from blink.feature_registry import NAMES
from blink.session import SessionEncoder

log = logging.getLogger(__name__)
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Scale:
    items: int
    users: int
    categories: int
    head_users: int  # head lists precomputed through the pipeline (the rest take the tail path)
    head_items: int  # similar-item lists precomputed


SCALES = {
    "tiny": Scale(items=400, users=800, categories=8, head_users=50, head_items=40),
    "demo": Scale(items=3_000, users=8_000, categories=20, head_users=400, head_items=300),
    "bench": Scale(items=100_000, users=500_000, categories=50, head_users=3_000, head_items=2_000),
}


def _feature_values(names: list[str], n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Plausible values by the feature's kind (shares in [0, 1], ages in hours, else counts)."""
    out = {}
    for name in names:
        if "share" in name or "rate" in name or "ratio" in name or "frac" in name:
            out[name] = rng.random(n).astype(np.float32)
        elif "hours" in name or "age" in name or "since" in name:
            out[name] = rng.exponential(72.0, n).astype(np.float32)
        else:
            out[name] = np.floor(rng.lognormal(1.0, 1.2, n)).astype(np.float32)
    return out


def _histories(rng: np.random.Generator, s: Scale, user_cat: np.ndarray, item_cat: np.ndarray,
               popularity: np.ndarray) -> list[np.ndarray]:
    """Item positions per user: heavy-tailed lengths (median ~8, a few in the hundreds), 80 %
    from the user's category, each drawn by popularity (inverse-CDF sampling, vectorised)."""
    lengths = np.minimum(np.floor(rng.pareto(1.3, s.users) * 6 + 2).astype(np.int64), 1_000)
    owner = np.repeat(np.arange(s.users), lengths)
    picks = np.empty(len(owner), np.int64)
    own = rng.random(len(owner)) < 0.8
    cdf = np.cumsum(popularity) / popularity.sum()
    picks[~own] = np.minimum(np.searchsorted(cdf, rng.random(int((~own).sum()))), s.items - 1)
    cat_of_pick = user_cat[owner]
    for c in range(s.categories):
        pool = np.flatnonzero(item_cat == c)
        at = np.flatnonzero(own & (cat_of_pick == c))
        if len(pool) == 0:
            picks[at] = np.minimum(np.searchsorted(cdf, rng.random(len(at))), s.items - 1)
            continue
        pool_cdf = np.cumsum(popularity[pool]) / popularity[pool].sum()
        picks[at] = pool[np.minimum(np.searchsorted(pool_cdf, rng.random(len(at))), len(pool) - 1)]
    bounds = np.cumsum(lengths)[:-1]
    return [np.unique(h) for h in np.split(picks, bounds)]


def build(cfg: Config, scale: str, directory: Path, seed: int = 3) -> dict[str, Any]:
    """Write the version directory (everything but head lists and the manifest)."""
    s = SCALES[scale]
    rng = np.random.default_rng(seed)
    dim = int(cfg.embeddings.grid_factors[0])
    started = time.perf_counter()
    centroids = rng.normal(size=(s.categories, dim)).astype(np.float32) / np.sqrt(dim)
    item_cat = rng.choice(s.categories, size=s.items)
    item_vec = (centroids[item_cat] + 0.35 / np.sqrt(dim) * rng.normal(size=(s.items, dim))).astype(np.float32)
    popularity = rng.pareto(1.2, size=s.items) + 0.05
    user_cat = rng.choice(s.categories, size=s.users)
    user_vec = (centroids[user_cat] + 0.2 / np.sqrt(dim) * rng.normal(size=(s.users, dim))).astype(np.float32)
    item_ids = np.array([f"i{j:06d}" for j in range(s.items)])
    user_ids = np.array([f"u{j:07d}" for j in range(s.users)])
    categories = [f"c{c:02d}" for c in range(s.categories)]
    history = _histories(rng, s, user_cat, item_cat, popularity)
    log.info("vectors and %d histories in %.0f s", s.users, time.perf_counter() - started)

    directory.mkdir(parents=True)
    np.savez(directory / layout.EMBEDDINGS, item_ids=item_ids, item_vectors=item_vec, user_ids=user_ids,
             user_vectors=user_vec)
    fdir = layout.features_dir(directory, "serve")
    fdir.mkdir(parents=True)
    as_of = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    top = np.argsort(-popularity)[:200]
    trending = [(str(item_ids[j]), round(float(popularity[j]) / float(popularity[top[0]]), 6)) for j in top]
    (fdir / "meta.json").write_text(json.dumps({"categories": categories, "as_of_ms": as_of, "trending": trending}))
    items = pd.DataFrame({"item_id": item_ids, "category": np.asarray(categories)[item_cat],
                          **_feature_values([f.name for f in ITEM_FEATURES], s.items, rng)})
    items.to_parquet(fdir / "items.parquet", index=False)
    share = rng.dirichlet(np.full(s.categories, 0.3), size=s.users).astype(np.float32)
    users = pd.DataFrame({"user_id": user_ids, **_feature_values([f.name for f in USER_FEATURES], s.users, rng)})
    users["category_share"] = list(share)
    users["category_hours"] = list(rng.exponential(200.0, size=(s.users, s.categories)).astype(np.float32))
    users["history"] = [item_ids[h] for h in history]
    users["recent"] = [item_ids[rng.permutation(h)[:10]] for h in history]
    users.to_parquet(fdir / "users.parquet", index=False)
    _covisitation(rng, s, item_ids, item_cat, popularity, cfg.candidates.covisit_top_n).to_parquet(
        fdir / layout.COVISITATION, index=False)
    _session_weights(rng, dim, cfg.session.hidden).save(directory)
    _ranker(cfg, rng).save_model(str(directory / layout.RANKER))
    index = _index(cfg, item_vec, user_vec, directory)
    log.info("built %s-scale version in %.0f s", scale, time.perf_counter() - started)
    return {"items": s.items, "users": s.users, "history_events": int(sum(len(h) for h in history)),
            "as_of_ms": as_of, "index": index}


def _covisitation(rng: np.random.Generator, s: Scale, item_ids: np.ndarray, item_cat: np.ndarray,
                  popularity: np.ndarray, top_n: int) -> pd.DataFrame:
    by_cat = [np.flatnonzero(item_cat == c) for c in range(s.categories)]
    neighbours, scores = [], []
    for j in range(s.items):
        pool = by_cat[int(item_cat[j])]
        pick = pool[rng.choice(len(pool), size=min(top_n, len(pool)), replace=False)]
        order = np.argsort(-popularity[pick])
        neighbours.append(item_ids[pick[order]])
        scores.append(np.sort(rng.random(len(pick)).astype(np.float32))[::-1])
    return pd.DataFrame({"item_id": item_ids, "neighbours": neighbours, "scores": scores})


def _session_weights(rng: np.random.Generator, dim: int, hidden: int) -> SessionEncoder:
    def w(*shape: int) -> np.ndarray:
        return (rng.normal(size=shape) / np.sqrt(shape[-1])).astype(np.float32)

    return SessionEncoder(w_ih=w(3 * hidden, dim), w_hh=w(3 * hidden, hidden), b_ih=w(3 * hidden),
                          b_hh=w(3 * hidden), w_out=w(dim, hidden), b_out=w(dim), version="serving-model")


def _ranker(cfg: Config, rng: np.random.Generator) -> Any:
    """The configured number of trees at the configured depth, on rows of the real width."""
    import xgboost as xgb

    groups, per = 200, 100
    x = rng.lognormal(0.0, 1.0, size=(groups * per, len(NAMES))).astype(np.float32)
    signal = x[:, : len(NAMES) // 3].sum(axis=1) + rng.normal(size=len(x))
    y = (signal > np.quantile(signal, 0.9)).astype(np.float32)
    d = xgb.DMatrix(x, label=y, qid=np.repeat(np.arange(groups), per), feature_names=NAMES, missing=np.nan)
    r = cfg.ranker
    params = {"objective": r.objective, "eta": r.learning_rate, "max_depth": r.max_depth,
              "tree_method": "hist", "seed": 7, "nthread": 2}
    return xgb.train(params, d, num_boost_round=r.n_estimators)


def _index(cfg: Config, item_vec: np.ndarray, user_vec: np.ndarray, directory: Path) -> dict[str, Any]:
    """The index task's own tuning (and precision gate) on these vectors."""
    from jobs.index import build_index, choose_precision, sample_queries

    queries, _ = sample_queries(user_vec, item_vec, cfg.retrieval.tune_queries)
    retriever, tuning = build_index(item_vec, queries, cfg.retrieval, directory)
    if cfg.retrieval.quantize:
        retriever, tuning["precision"] = choose_precision(retriever, item_vec, queries, cfg.retrieval, directory)
    (directory / layout.RETRIEVAL_TUNING).write_text(json.dumps(tuning, indent=1))
    return {"params": retriever.params, "recall": tuning["chosen"]["recall"]}


def precompute_and_publish(cfg: Config, scale: str, directory: Path) -> dict[str, Any]:
    """Head lists through ``Pipeline.recommend_many`` (the precompute task's batches), similar lists,
    the manifest with checksums, then the store's atomic switch -- as the publish task does."""
    from blink.candidates import SourceSizes
    from blink.feature_matrix import Context
    from blink.model import Model
    from blink.pipeline import Pipeline
    from jobs.publish import checksums, store

    s = SCALES[scale]
    model = Model.load(directory, "serve")
    pipe = Pipeline(model, sizes=SourceSizes.from_config(cfg))
    ctx = Context(now_ms=model.as_of_ms)
    active = np.argsort([-len(h) for h in model.history], kind="stable")[: s.head_users]
    head_users = [model.user_ids[j] for j in active]
    started = time.perf_counter()
    batch = cfg.precompute.batch_users  # as the precompute task batches them
    answered = [x for at in range(0, len(head_users), batch)
                for x in pipe.recommend_many(head_users[at:at + batch], cfg.head.list_length, ctx)]
    heads = [(u, x) for u, x in zip(head_users, answered, strict=True) if x]
    rate = len(head_users) / (time.perf_counter() - started)
    head_items = [str(i) for i, _ in model.trending] + [str(i) for i in model.item_ids[: s.head_items]]
    found = ((i, pipe.similar(i, cfg.head.list_length)) for i in dict.fromkeys(head_items))
    similar = [(i, x) for i, x in found if x]
    (directory / layout.HEAD_USERS).write_text(json.dumps([u for u, _ in heads]))
    pd.DataFrame([(u, json.dumps(x)) for u, x in heads], columns=["user_id", "items"]).to_parquet(
        directory / layout.HEAD_LISTS, index=False)
    pd.DataFrame([(i, json.dumps(x)) for i, x in similar], columns=["item_id", "items"]).to_parquet(
        directory / layout.SIMILAR_LISTS, index=False)
    manifest = {"version": directory.name, "as_of_ms": model.as_of_ms, "fitted_from": directory.name,
                "checksums": checksums(directory), "published_at_ms": int(time.time() * 1000),
                "head_users": len(heads), "head_items": len(similar), "built_by": "tools.serving_model",
                "scale": scale}
    (directory / layout.MANIFEST).write_text(json.dumps(manifest, indent=1))
    store(cfg).publish(directory.name, heads, model.trending, manifest, similar=similar)
    return {"head_users": len(heads), "similar_items": len(similar), "precompute_users_per_s": round(rate, 1)}
