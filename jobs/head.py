"""Head selection: the most active users (configurable fraction) get precomputed lists."""

from __future__ import annotations

import json
import logging

import numpy as np

from blink import layout
from blink.config import Config
from blink.feature_matrix import USER_INDEX
from blink.model import Model
from jobs.interval import Interval

log = logging.getLogger(__name__)


def select(events: np.ndarray, fraction: float) -> np.ndarray:
    """Positions of the top ``fraction`` by activity (ties broken by position, so stable)."""
    n = int(np.ceil(len(events) * fraction))
    return np.argsort(-events, kind="stable")[:n]


def run(cfg: Config, interval: Interval) -> dict[str, int]:
    # Only features and vectors: the index and the ranker are built by tasks head does not wait for.
    model = Model.load(interval.artifact_dir, "serve", retriever=False, ranker=False)
    personalisable = np.flatnonzero(~np.isnan(model.user_vectors[:, 0]))
    activity = model.user_features[personalisable, USER_INDEX["u_events"]]
    chosen = personalisable[select(activity, cfg.head.user_fraction)]
    users = [model.user_ids[j] for j in chosen]
    (interval.artifact_dir / layout.HEAD_USERS).write_text(json.dumps(users))
    log.info("head: %d of %d personalisable users", len(users), len(personalisable))
    return {"head_users": len(users), "personalisable_users": len(personalisable)}
