"""Ranking features for one request: :func:`feature_matrix`, used by training and serving alike.

The names, groups and meanings live in the registry (blink/feature_registry.py, re-exported
here). User and item aggregates come precomputed by the Spark ``features`` job and are looked
up by position in the loaded :class:`~blink.model.Model`; user x item, session and context
features are computed here, in NumPy, by the one function that ranker training (in Spark
workers), evaluation, precompute and the online tail path all call — so they cannot drift.
Missing values are NaN (infinities too: a zero price makes a ratio unknown, not infinite).

``python -m blink.feature_matrix > docs/features.md`` regenerates the feature table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from blink.feature_registry import (
    CONTEXT,
    CROSS,
    DAY_MS,
    DAY_PARTS,
    DEVICES,
    EVENT_TYPES,
    HOUR_MS,
    ITEM_FEATURES,
    ITEM_INDEX,
    NAMES,
    RANKING_FEATURES,
    SESSION,
    SOURCE,
    TOP_CANDIDATES,
    TRENDS,
    USER_CONTEXT,
    USER_FEATURES,
    USER_INDEX,
    WINDOWS,
    WINDOWS_DAYS,
    Feature,
    markdown,
)

if TYPE_CHECKING:
    from blink.model import Model

__all__ = [
    "CONTEXT", "CROSS", "DAY_MS", "DAY_PARTS", "DEVICES", "EVENT_TYPES", "HOUR_MS", "ITEM_FEATURES",
    "ITEM_INDEX", "NAMES", "RANKING_FEATURES", "SESSION", "SOURCE", "TOP_CANDIDATES", "TRENDS", "USER_CONTEXT",
    "USER_FEATURES", "USER_INDEX", "WINDOWS", "WINDOWS_DAYS", "Context", "Feature", "context_row", "day_part",
    "feature_matrix", "markdown",
]


@dataclass(frozen=True)
class Context:
    """What the request knows besides the user: when, and from which device."""

    now_ms: int
    device: str | None = None


def day_part(now_ms: int) -> int:
    """Index into DAY_PARTS of a UTC time: 0 = 00-06h, ..., 3 = 18-24h."""
    return int((now_ms % DAY_MS) // HOUR_MS) // 6


def context_row(ctx: Context) -> np.ndarray:
    """The CONTEXT features: what the request alone says."""
    hours = (ctx.now_ms % DAY_MS) / HOUR_MS
    weekday = ((ctx.now_ms // DAY_MS) + 3) % 7  # Monday = 0; 1970-01-01 was a Thursday
    row = [np.sin(2 * np.pi * hours / 24), np.cos(2 * np.pi * hours / 24),
           np.sin(2 * np.pi * weekday / 7), np.cos(2 * np.pi * weekday / 7), float(weekday >= 5)]
    row += [np.nan if ctx.device not in DEVICES else float(ctx.device == d) for d in DEVICES]
    return np.asarray(row, dtype=np.float32)


def feature_matrix(model: Model, user_pos: int | None, item_pos: np.ndarray, scores: np.ndarray,
                   ctx: Context, session_vector: np.ndarray | None = None,
                   sources: np.ndarray | None = None, session_items: np.ndarray | None = None,
                   out: np.ndarray | None = None) -> np.ndarray:
    """One row of NAMES per candidate item (in candidate order) for one user and request.

    ``scores`` are the query-vector scores of ``item_pos``; ``user_pos`` None means an unknown
    user (user features NaN); ``session_vector`` None means no session (session features NaN);
    ``sources`` are the SOURCE columns built by blink.candidates (None: all NaN);
    ``session_items`` are the positions of the items the live session touched; ``out`` (float32,
    one row per candidate) receives the rows instead of a new array: many requests' matrices
    written straight into the one that is ranked.
    """
    n = len(item_pos)
    user = _user_row(model, user_pos)
    items = model.item_features[item_pos]
    category = model.item_category[item_pos]
    blocks = [
        np.broadcast_to(user, (n, len(USER_FEATURES))),
        items,
        _cross(model, user_pos, user, items, category, np.asarray(scores, np.float32)),
        _session(model, item_pos, category, session_vector, session_items),
        np.full((n, len(SOURCE)), np.nan, np.float32) if sources is None else sources,
        np.broadcast_to(context_row(ctx), (n, len(CONTEXT))),
        np.broadcast_to(_user_context(user, ctx), (n, len(USER_CONTEXT))),
    ]
    if out is None:
        out = np.empty((n, len(NAMES)), np.float32)
    return np.concatenate(blocks, axis=1, out=out)


def _user_row(model: Model, user_pos: int | None) -> np.ndarray:
    if user_pos is None:
        return np.full(len(USER_FEATURES), np.nan, np.float32)
    return np.asarray(model.user_features[user_pos], np.float32)


def _cross(model: Model, user_pos: int | None, user: np.ndarray, items: np.ndarray,
           category: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The CROSS features, in registry order."""
    n = len(scores)
    unknown_category = category == len(model.categories)
    affinity = np.full(n, np.nan, np.float32)
    hours_since = np.full(n, np.nan, np.float32)
    in_top = np.full(n, np.nan, np.float32)
    if user_pos is not None:
        shares = model.user_category_share[user_pos]
        affinity = shares[category]
        if model.user_category_hours is not None:
            hours_since = model.user_category_hours[user_pos, category]
        known = shares[: len(model.categories)]
        if np.nan_to_num(known).max(initial=0.0) > 0:
            top = int(np.nanargmax(known))  # ties: the first category in meta.json order
            in_top = np.where(unknown_category, np.nan, (category == top).astype(np.float32))
    price = items[:, ITEM_INDEX["i_price"]]
    with np.errstate(divide="ignore", invalid="ignore"):
        price_ratio = price / user[USER_INDEX["u_mean_price"]]
        columns = [
            scores,
            np.arange(n, dtype=np.float32),
            scores - (scores.max() if n else 0.0),
            affinity,
            _query_category_share(category, scores, len(model.categories)),
            affinity / items[:, ITEM_INDEX["i_category_share_7d"]],
            hours_since,
            in_top,
            price_ratio,
            np.abs(np.log(price_ratio)),
            price / user[USER_INDEX["u_max_price"]],
            price / user[USER_INDEX["u_mean_purchase_price"]],
            _rank_descending(items[:, ITEM_INDEX["i_events_7d"]]),
            _rank_descending(items[:, ITEM_INDEX["i_events_1d"]]),
        ]
    out = np.column_stack(columns).astype(np.float32, copy=False)
    out[~np.isfinite(out)] = np.nan
    return out


def _query_category_share(category: np.ndarray, scores: np.ndarray, n_categories: int) -> np.ndarray:
    """Share of the TOP_CANDIDATES best-scored candidates in each candidate's category.

    Needs no user features, so it tells the ranker what an anonymous session is about too.
    """
    top = category[np.argsort(-scores, kind="stable")[:TOP_CANDIDATES]]
    share = np.bincount(top, minlength=n_categories + 1) / max(len(top), 1)
    return np.where(category == n_categories, np.nan, share[category]).astype(np.float32)


def _rank_descending(values: np.ndarray) -> np.ndarray:
    """Rank / count: 0 for the largest value; ties keep candidate (retrieval) order; NaN last."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), np.float32)
    ranks[order] = np.arange(len(values), dtype=np.float32) / max(len(values), 1)
    return ranks


def _session(model: Model, item_pos: np.ndarray, category: np.ndarray,
             session_vector: np.ndarray | None, session_items: np.ndarray | None) -> np.ndarray:
    """The SESSION features: similarity to what the user is doing right now, if known."""
    n = len(item_pos)
    out = np.full((n, len(SESSION)), np.nan, np.float32)
    unknown = category == len(model.categories)
    if session_vector is not None and n and np.isfinite(session_vector).all():
        similarity = model.item_vectors[item_pos] @ np.asarray(session_vector, np.float32)
        focus = category[int(np.argmax(similarity))]
        out[:, 0] = similarity
        out[:, 1] = np.where(unknown, np.nan, (category == focus).astype(np.float32))
    if session_items is not None and len(session_items) and n:
        counts = np.bincount(model.item_category[session_items], minlength=len(model.categories) + 1)
        out[:, 2] = np.where(unknown, np.nan, counts[category] / len(session_items))
    return out


def _user_context(user: np.ndarray, ctx: Context) -> np.ndarray:
    """The USER_CONTEXT features: how typical this device and time of day are for the user."""
    device = user[USER_INDEX[f"u_share_{ctx.device}"]] if ctx.device in DEVICES else np.nan
    part = user[USER_INDEX[f"u_share_{DAY_PARTS[day_part(ctx.now_ms)]}"]]
    return np.asarray([device, part], np.float32)


if __name__ == "__main__":
    print(markdown(), end="")
