"""Ranker training groups for the session path: anonymous session prefixes -> the next items.

Without these, the ranker only ever sees known users and learns to fall back on popularity
when user features are missing -- exactly the case of a new visitor. Each group is built by
the serving code: the GRU state after the prefix, its query vector, retrieval by that vector,
and feature_matrix with the session vector (user features NaN, as online).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from blink.candidates import SourceSizes
from blink.feature_matrix import Context
from jobs.spark import cached_model

if TYPE_CHECKING:
    from blink.pipeline import Pipeline

MIN_LEN = 3
PREFIXES = (1, 3, 5)  # clicks a new visitor has made: the buckets the evaluation scores


def session_groups(directory: str, as_of_ms: int, sizes: SourceSizes,
                   sessions: Iterator[list[tuple[str, int]]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(features, grades) per session prefix: the first 1, 3, 5 events and the first half are
    each a context (the evaluation's "new user after N clicks"), the rest the labels.

    ``sessions`` holds (item_id, grade) in time order. The prefix is replayed through the
    session encoder exactly as the live updater does, and the candidates and features come
    from the serving pipeline's session query. Runs inside Spark workers.
    """
    from blink.pipeline import Pipeline

    model = cached_model(directory, "train", False)
    if model.session is None:
        return
    pipe = Pipeline(model, sizes=sizes)
    for events in sessions:
        known = [(model.item_index[i], g) for i, g in events if i in model.item_index]
        if len(known) < MIN_LEN:
            continue
        for cut in sorted({c for c in (*PREFIXES, len(known) // 2) if 1 <= c < len(known)}):
            group = _group(pipe, known[:cut], known[cut:], as_of_ms)
            if group is not None:
                yield group


def _group(pipe: Pipeline, prefix: list[tuple[int, int]], rest: list[tuple[int, int]],
           as_of_ms: int) -> tuple[np.ndarray, np.ndarray] | None:
    """One ranking group: the session after ``prefix`` (positions, grades), labelled by ``rest``."""
    model = pipe.model
    assert model.session is not None
    h = model.session.initial()
    for pos, _ in prefix:
        h = model.session.step(h, model.item_vectors[pos])
    vector = model.session.vector(h, model.item_vectors[prefix[-1][0]])
    q = pipe.query(None, session=vector, session_items=[str(model.item_ids[p]) for p, _ in prefix])
    if q is None:
        return None
    cands = pipe.candidates_for(q)
    truth: dict[int, int] = {}
    for pos, grade in rest:
        truth[pos] = max(truth.get(pos, 0), grade)
    y = np.array([truth.get(int(p), 0) for p in cands.positions], np.float32)
    if y.max(initial=0) == 0:
        return None
    return pipe.features(q, cands, Context(now_ms=as_of_ms)), y


def label_sessions(spark: object, lake_events: str, start_ms: int, end_ms: int,
                   limit: int) -> list[list[tuple[str, int]]]:
    """Sessions of the label window as (item_id, grade) in time order, at most ``limit``."""
    from pyspark.sql import functions as F

    from jobs.labels import GRADES

    grade = F.coalesce(*[F.when(F.col("event_type") == t, F.lit(g)) for t, g in GRADES.items()], F.lit(0))
    rows = (spark.read.parquet(lake_events)  # type: ignore[attr-defined]
            .where((F.col("timestamp") >= start_ms) & (F.col("timestamp") < end_ms) & F.col("item_id").isNotNull())
            .groupBy("session_id")
            .agg(F.sort_array(F.collect_list(F.struct("timestamp", "item_id", grade.alias("g")))).alias("ev"))
            .where(F.size("ev") >= MIN_LEN).orderBy("session_id").limit(limit).collect())
    return [[(e["item_id"], int(e["g"])) for e in r["ev"]] for r in rows]
