"""Blink against the strongest simple baselines, on one split, asking the same questions.

The evaluate task's per-user table (jobs/evaluate.py) says how the two-stage answer compares
with retrieval alone and with trending; this module says whether Blink is worth running at
all: it fits popularity (all-time and recent), ALS (with the hyperparameters the embeddings
task tuned on its validation cut), EASE, item-kNN, co-visitation and session-kNN on every
event before the eval cut-off, and asks them and Blink the questions of
``jobs.protocol.eval_set``:

- known users: everything they did before the cut is theirs; truth = new items in [eval, serve);
- new users after N clicks (N in eval.new_clicks): their first N events in the test window
  are replayed as a live session; truth = the other items they touched.

Blink answers through the shared pipeline exactly as the router does (blink/pipeline.py):
the session vector from the GRU state the clicks build, blended into a known user's vector,
consumed items excluded, trending when nothing is personal. Nothing here imports serving/:
the router calls the same ``Pipeline.recommend``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from blink import layout
from blink.candidates import SourceSizes
from blink.config import Config
from blink.feature_matrix import Context
from blink.model import Model
from blink.pipeline import Pipeline
from blink.session_store import advance
from jobs import baselines, protocol
from jobs.embeddings import ANON, Weighting, events_frame, weigh
from jobs.interval import Interval

log = logging.getLogger(__name__)
SYSTEM = "blink"


class BlinkSystem:
    """Blink's published answer as a ``baselines.Recommender``: already trained by the DAG."""

    def __init__(self, model: Model, sizes: SourceSizes, now_ms: int, blend: float) -> None:
        self.pipe = Pipeline(model, sizes=sizes)
        self.ctx = Context(now_ms=now_ms)
        self.blend = blend

    def fit(self, train: pd.DataFrame) -> Self:
        return self  # trained by the DAG's tasks, on the same events before the cut

    def recommend(self, queries: Sequence[baselines.Query], k: int, exclude_seen: bool = True) -> list[list[str]]:
        return [self._one(q, k) for q in queries]

    def _one(self, q: baselines.Query, k: int) -> list[str]:
        model, clicks = self.pipe.model, list(q.history)
        user = q.user_id or "new-visitor"
        vector = None
        if clicks and model.session is not None:  # the live session the router would hold
            state = advance(None, [{"item_id": i} for i in clicks], model.session, model.item_vector)
            vector = self.pipe.session_vector(state)
        answer = self.pipe.recommend(user, k, self.ctx, exclude=clicks, session=vector, blend=self.blend,
                                     session_items=clicks)
        if answer is None:  # the router's fallback: trending, consumed items filtered
            answer = self.pipe.trending(k, exclude={*clicks, *model.consumed(user)})
        return [i for i, _ in answer]


def baseline_systems(cfg: Config, train: pd.DataFrame, as_of_ms: int, als_params: dict[str, Any],
                     notes: list[str]) -> dict[str, baselines.Recommender]:
    """Every baseline fitted on ``train``; one that cannot run on this data is left out with a note."""
    e = cfg.eval
    make: dict[str, Any] = {
        "popularity_all": lambda: baselines.Popularity(),
        "popularity_recent": lambda: baselines.Popularity(days=e.popular_days, as_of_ms=as_of_ms),
        "als_tuned": lambda: baselines.ALS(**als_params, iterations=cfg.embeddings.iterations,
                                           threads=cfg.embeddings.threads),
        "ease": lambda: baselines.EASE(lam=e.ease_lambda, max_items=e.ease_max_items),
        "item_knn": lambda: baselines.ItemKNN(neighbours=100),
        "covisitation": lambda: baselines.CoVisitation(),
        "session_knn": lambda: baselines.SessionKNN(),
    }
    fitted: dict[str, baselines.Recommender] = {}
    for name, new in make.items():
        if name not in e.baselines:
            continue
        try:
            seconds = protocol.timed_fit(system := new(), train)
        except baselines.SkipBaseline as why:
            notes.append(f"{name}: {why}")
            continue
        log.info("head-to-head: fitted %s in %.1f s", name, seconds)
        fitted[name] = system
    return fitted


def compare(cfg: Config, interval: Interval, model: Model) -> dict[str, Any]:
    """Score Blink and every baseline on the split's questions; the best baseline per question set."""
    started = time.perf_counter()
    eval_cut, serve_cut = interval.as_of("eval"), interval.as_of("serve")
    tuning = json.loads((interval.artifact_dir / layout.EMBEDDINGS_TUNING).read_text())["chosen"]
    weighting = Weighting(binary=bool(tuning["binary"]), min_rating=tuning["min_rating"])
    events = weigh(events_frame(cfg, serve_cut), cfg.embeddings.event_weights, weighting)
    train, test = events[events["timestamp"] < eval_cut], events[events["timestamp"] >= eval_cut]
    # An anonymous session is a new visitor in the test window (its pseudo-user never returns).
    cases = protocol.eval_set(train, test[~test["user_id"].str.startswith(ANON)], cfg.eval.new_clicks)
    rng = random.Random(5)
    known = _sample(rng, cases.known, cfg.eval.max_users)
    new = {n: _sample(rng, c, cfg.eval.max_users) for n, c in cases.new.items()}
    notes: list[str] = []
    als = {key: tuning[key] for key in ("factors", "regularization", "alpha")}
    with threadpool_limits(1, "blas"):  # implicit parallelises itself
        systems = {SYSTEM: BlinkSystem(model, SourceSizes.from_config(cfg), eval_cut, cfg.session.blend),
                   **baseline_systems(cfg, train, eval_cut, als, notes)}
        table: dict[str, dict[str, dict[str, float]]] = {}
        for name, system in systems.items():
            table[name] = {"known": protocol.score_cases(system, known, cfg.eval.k)}
            for n, part in new.items():
                table[name][f"new@{n}"] = protocol.score_cases(system, part, cfg.eval.k)
    questions = list(table[SYSTEM])
    best = {q: max((s for s in table if s != SYSTEM), key=lambda s: np.nan_to_num(table[s][q]["ndcg"]), default=None)
            for q in questions}
    return {"k": cfg.eval.k, "table": table, "best_baseline": best, "notes": notes,
            "seconds": round(time.perf_counter() - started, 2)}


def gate(cfg: Config, result: dict[str, Any]) -> dict[str, Any]:
    """Blink's NDCG on known users must reach the best baseline's, less eval.baseline_tolerance.

    Only the known-user question gates: that is what the head and tail paths answer for
    most traffic; the new-user rows are reported (and often closer: all systems see a few
    clicks only) but do not block a publish.
    """
    best = result["best_baseline"].get("known")
    ours = result["table"][SYSTEM]["known"]
    if best is None or not ours["users"]:
        return {"passed": True, "reason": "no baseline or no known users to compare on"}
    theirs = result["table"][best]["known"]["ndcg"]
    floor = theirs * (1 - cfg.eval.baseline_tolerance)
    passed = bool(ours["ndcg"] >= floor)
    reason = (f"Blink ndcg@{cfg.eval.k} {ours['ndcg']:.4f} on {ours['users']} known users vs best baseline "
              f"{best} {theirs:.4f} (floor {floor:.4f} at tolerance {cfg.eval.baseline_tolerance:.0%})")
    verdict = "ok: " if passed else ("NOT PUBLISHED: " if cfg.eval.baseline_gate == "block" else "BELOW BASELINE: ")
    return {"passed": passed, "reason": verdict + reason, "best": best}


def _sample(rng: random.Random, cases: list[protocol.EvalCase], n: int) -> list[protocol.EvalCase]:
    return cases if len(cases) <= n else rng.sample(cases, n)
