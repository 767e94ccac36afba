"""The offline protocol every system is measured by: temporal split, questions, scores, tuning.

Known users are asked with ``Query(user_id=u)``, new users after N clicks with
``Query(history=first_n_items)``, so matrix models, session models, popularity and Blink itself
(jobs/head_to_head.py) answer the same questions. Hyperparameters are tuned on a validation
cut before the test window, never on the test window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import pandas as pd

from jobs.baselines import ALS, EASE, EASE_MAX_ITEMS, Query, Recommender, SkipBaseline, interactions
from jobs.metrics import hit_at, ndcg_at, recall_at

# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def temporal_split(df: pd.DataFrame, test_cut_ms: int, horizon_ms: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train = events before the cut; test = events in [cut, cut + horizon)."""
    df = interactions(df)
    ts = df["timestamp"]
    return df[ts < test_cut_ms], df[(ts >= test_cut_ms) & (ts < test_cut_ms + horizon_ms)]


@dataclass(frozen=True)
class EvalCase:
    query: Query
    truth: set[str]


@dataclass
class EvalSet:
    """The questions of one temporal split: known users, and new users after N clicks."""

    known: list[EvalCase] = field(default_factory=list)
    new: dict[int, list[EvalCase]] = field(default_factory=dict)


def eval_set(train: pd.DataFrame, test: pd.DataFrame, clicks: Iterable[int] = (1, 3, 5)) -> EvalSet:
    """Known users: active in both; truth = their test items not interacted with before the cut.

    New users (no event before the cut) after N clicks: history = their first N test events,
    truth = the items of their other test events minus the history. Users with <= N test
    events, or nothing new left to find, are skipped.
    """
    train, test = interactions(train), interactions(test)
    seen = train.groupby("user_id")["item_id"].agg(set).to_dict()
    out = EvalSet(new={n: [] for n in clicks})
    for user, events in test.groupby("user_id", sort=True):
        items = events["item_id"].tolist()  # time order: test is sorted by timestamp
        uid = str(user)
        if uid in seen:
            truth = set(items) - seen[uid]
            if truth:
                out.known.append(EvalCase(Query(user_id=uid), truth))
            continue
        for n in out.new:
            truth = set(items[n:]) - set(items[:n])
            if len(items) > n and truth:
                out.new[n].append(EvalCase(Query(history=tuple(items[:n])), truth))
    return out


def score_cases(system: Recommender, cases: Sequence[EvalCase], k: int) -> dict[str, float]:
    """Mean NDCG@k, recall@k and hit rate@k over the cases (seen items excluded), and the count."""
    if not cases:
        return {"ndcg": float("nan"), "recall": float("nan"), "hr": float("nan"), "users": 0}
    lists = system.recommend([c.query for c in cases], k, exclude_seen=True)
    return {
        "ndcg": float(np.mean([ndcg_at(r, c.truth, k) for r, c in zip(lists, cases, strict=True)])),
        "recall": float(np.mean([recall_at(r, c.truth, k) for r, c in zip(lists, cases, strict=True)])),
        "hr": float(np.mean([hit_at(r, c.truth, k) for r, c in zip(lists, cases, strict=True)])),
        "users": len(cases),
    }


def evaluate(systems: Mapping[str, Recommender], train: pd.DataFrame, test: pd.DataFrame, k: int = 20,
             clicks: Iterable[int] = (1, 3, 5)) -> dict[str, dict[str, dict[str, float]]]:
    """Score fitted systems on one split: {system: {"known" | "new@N": {ndcg, recall, hr, users}}}.

    The systems must already be fitted on `train` (fitting is the caller's, so tuned or timed
    systems can be passed in). Every system is asked the same questions and the user's earlier
    items are excluded the same way for all.
    """
    cases = eval_set(train, test, clicks)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, system in systems.items():
        out[name] = {"known": score_cases(system, cases.known, k)}
        for n, new_cases in cases.new.items():
            out[name][f"new@{n}"] = score_cases(system, new_cases, k)
    return out


def timed_fit(system: Recommender, train: pd.DataFrame) -> float:
    """Fit and return the seconds it took."""
    start = time.perf_counter()
    system.fit(train)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Tuning
# ---------------------------------------------------------------------------------------------

ALS_GRID: dict[str, list[Any]] = {
    "factors": [32, 64, 128],
    "regularization": [0.01, 0.1, 1.0],
    "alpha": [1.0, 5.0, 10.0, 40.0],
}
EASE_GRID: dict[str, list[Any]] = {"lam": [50.0, 200.0, 500.0, 2000.0]}


@dataclass
class Tuned:
    """A grid search: every point with its validation scores, the winner, refit before the test cut."""

    best: dict[str, Any]
    grid: list[dict[str, Any]]  # params + val_known_ndcg, val_new_ndcg, objective, fit_seconds
    system: Recommender
    fit_seconds: float  # the refit


def tune(make: Callable[..., Recommender], grid: Mapping[str, Sequence[Any]], df: pd.DataFrame,
         val_cut_ms: int, test_cut_ms: int, k: int = 20, new_clicks: int | None = 3) -> Tuned:
    """Grid search on a validation cut before the test window, then refit with the winner.

    Each point is fitted on events before `val_cut_ms` and scored on [val_cut_ms, test_cut_ms):
    the objective is NDCG@k over known users and new users after `new_clicks` clicks pooled
    (None: known users only), so a dataset with few returning users still tunes on hundreds
    of questions. The winner is refit on everything before `test_cut_ms`.
    """
    train, val = temporal_split(df, val_cut_ms, test_cut_ms - val_cut_ms)
    cases = eval_set(train, val, [] if new_clicks is None else [new_clicks])
    new_cases = cases.new.get(new_clicks, []) if new_clicks is not None else []
    if not cases.known and not new_cases:
        raise ValueError("the validation window has no users to score")
    results: list[dict[str, Any]] = []
    for values in product(*grid.values()):
        params = dict(zip(grid.keys(), values, strict=True))
        system = make(**params)
        seconds = timed_fit(system, train)
        known, new = score_cases(system, cases.known, k), score_cases(system, new_cases, k)
        pooled = (np.nan_to_num(known["ndcg"]) * known["users"] + np.nan_to_num(new["ndcg"]) * new["users"])
        results.append({**params, "val_known_ndcg": known["ndcg"], "val_new_ndcg": new["ndcg"],
                        "objective": float(pooled / (known["users"] + new["users"])), "fit_seconds": seconds})
    best_row = max(results, key=lambda row: row["objective"])  # first best wins ties: grid order
    best = {key: best_row[key] for key in grid}
    system = make(**best)
    seconds = timed_fit(system, df[df["timestamp"] < test_cut_ms])
    return Tuned(best, results, system, seconds)


def tune_als(df: pd.DataFrame, val_cut_ms: int, test_cut_ms: int, grid: Mapping[str, Sequence[Any]] | None = None,
             k: int = 20, **fixed: Any) -> Tuned:
    """Tune ALS factors / regularization / alpha (default `ALS_GRID`); `fixed` goes to every `ALS`."""
    return tune(lambda **p: ALS(**p, **fixed), grid or ALS_GRID, df, val_cut_ms, test_cut_ms, k)


def tune_ease(df: pd.DataFrame, val_cut_ms: int, test_cut_ms: int, grid: Mapping[str, Sequence[Any]] | None = None,
              k: int = 20, max_items: int = EASE_MAX_ITEMS) -> Tuned:
    """Tune EASE's lambda (default `EASE_GRID`); raises `SkipBaseline` when there are too many items."""
    n_items = df.loc[df["timestamp"] < test_cut_ms, "item_id"].nunique()  # the refit's items: the most
    if n_items > max_items:
        raise SkipBaseline(f"EASE skipped: {n_items:,} items > {max_items:,} (dense inverse too large)")
    return tune(lambda **p: EASE(**p, max_items=max_items), grid or EASE_GRID, df, val_cut_ms, test_cut_ms, k)
