"""Refresh: the hourly run's model = the latest fitted version's models + the newest state.

The daily run (``recs_daily``) fits everything: embeddings, index, session model, ranker, the
evaluation and its gate. An hourly run (``recs_hourly``) does an hour's work on top of it:

- the fitted files of the latest published daily version (item vectors, ScaNN index, session
  GRU, ranker, fusion weights, the evaluation that passed the gate) are hard-linked into this
  version's directory: nothing is refitted, nothing copied;
- the aggregates (user/item features, trending, co-visitation) are recomputed at the serve
  cut-off only (the daily run needs three cut-offs; serving needs one);
- users who had an event since the fitted version's cut-off are folded into the fixed item
  vectors again (one least-squares solve per touched user); everyone else keeps the vector the
  fit folded, which is the same solve on the same data.

``fitted_from.json`` records the fitted version, so publish keeps pointing the next hourly
runs at it and the manifest says what is being served.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from blink import layout
from blink.config import Config
from blink.errors import SetupError
from jobs import aggregates
from jobs.embeddings import ANON, Weighting, fold_in, weigh
from jobs.interval import Interval
from jobs.spark import get_spark

log = logging.getLogger(__name__)

# What a fit produces and an hourly version reuses unchanged.
FITTED = (layout.EMBEDDINGS, layout.EMBEDDINGS_TUNING, layout.INDEX_DIR, layout.RETRIEVAL_TUNING,
          layout.SESSION_WEIGHTS, layout.SESSION_EVAL, layout.RANKER, layout.RANKER_IMPORTANCE, layout.FUSION,
          layout.EVAL)


def fitted_version(cfg: Config) -> Path:
    """The directory of the latest published fitted (daily) version."""
    pointer = cfg.layout.latest_fit
    if not pointer.exists():
        raise SetupError("no fitted model yet: an hourly run refreshes the latest daily fit; run "
                         "`blink run-dag --dag daily` first")
    source = cfg.layout.version(pointer.read_text().strip())
    if not (source / layout.MANIFEST).exists():
        raise SetupError(f"the latest fit {source.name} is incomplete (no manifest); run `blink run-dag --dag daily`")
    return source


def link(source: Path, target: Path) -> None:
    """Hard-link ``source`` (file or directory tree) to ``target``, replacing what is there;
    a copy where the file system cannot link."""
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    if source.is_dir():
        shutil.copytree(source, target, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(source), str(target))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def fold_touched(cfg: Config, fit_dir: Path, as_of_ms: int, since_ms: int, out: Path) -> dict[str, int]:
    """users_serve.npz at ``as_of_ms``: users with an event in [since_ms, as_of_ms) folded in
    again with their whole history; the others keep the fitted version's serve vectors."""
    from implicit.als import AlternatingLeastSquares
    from pyspark.sql import functions as F

    chosen = json.loads((fit_dir / layout.EMBEDDINGS_TUNING).read_text())["chosen"]
    emb = np.load(fit_dir / layout.EMBEDDINGS)
    items = pd.Index(emb["item_ids"])
    old = np.load(layout.user_vectors(fit_dir, "serve"))
    events = get_spark(cfg).read.parquet(str(cfg.layout.table("events")))
    before = events.where((F.col("timestamp") < as_of_ms) & F.col("item_id").isNotNull()
                          & F.col("user_id").isNotNull())
    touched = before.where(F.col("timestamp") >= since_ms).select("user_id").distinct()
    rows = (before.join(touched, "user_id", "left_semi")
            .select("user_id", "item_id", "event_type", "value", "timestamp").toPandas())
    model = AlternatingLeastSquares(factors=int(chosen["factors"]), regularization=float(chosen["regularization"]),
                                    alpha=float(chosen["alpha"]), use_gpu=False, num_threads=1)
    model.item_factors = np.asarray(emb["item_vectors"], np.float32)
    how = Weighting(binary=bool(chosen["binary"]), min_rating=chosen["min_rating"])
    with threadpool_limits(1, "blas"):
        ids, vectors = fold_in(model, items, weigh(rows, cfg.embeddings.event_weights, how))
    keep = ~np.isin(old["user_ids"], ids)
    np.savez(out, user_ids=np.concatenate([old["user_ids"][keep], ids]),
             user_vectors=np.concatenate([old["user_vectors"][keep], vectors]).astype(np.float32))
    assert not np.char.startswith(ids.astype(str), ANON).any()
    return {"users_refolded": len(ids), "users_kept": int(keep.sum())}


def run(cfg: Config, interval: Interval) -> dict[str, Any]:
    fit_dir = fitted_version(cfg)
    d = interval.artifact_dir
    if fit_dir == d:
        raise SetupError(f"version {d.name} is itself the latest fit; an hourly run needs a later date")
    for name in FITTED:
        if (fit_dir / name).exists():
            link(fit_dir / name, d / name)
    (d / layout.FITTED_FROM).write_text(json.dumps({"version": fit_dir.name}))
    fit_as_of = int(json.loads((fit_dir / layout.MANIFEST).read_text())["as_of_ms"])
    counts = aggregates.compute(cfg, interval, ("serve",))
    counts.update(fold_touched(cfg, fit_dir, interval.as_of("serve"), fit_as_of, layout.user_vectors(d, "serve")))
    log.info("refreshed from %s: %s", fit_dir.name, counts)
    return {"fitted_from": fit_dir.name, **counts}
