"""The ranking feature registry: every feature's name, group and meaning, in one place.

User and item aggregates are computed by the Spark ``features`` job (jobs/features.py),
which must produce exactly the columns named here, and looked up by position at serve time.
User x item and context features are computed by :func:`feature_matrix`, the one function
used by ranker training, evaluation, precompute and the online tail path alike.
Missing values are NaN, which XGBoost treats as "missing" rather than zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from blink.model import Model

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DEVICES = ("desktop", "mobile", "tablet", "tv")
WINDOWS_DAYS = (1, 7, 28)
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")


@dataclass(frozen=True)
class Feature:
    name: str
    group: str
    description: str


def _user() -> list[Feature]:
    f = [Feature("u_events", "user", "events before the as-of time")]
    f += [Feature(f"u_events_{d}d", "user", f"events in the last {d} day(s)") for d in WINDOWS_DAYS]
    f += [Feature(f"u_{t}", "user", f"{t} events") for t in EVENT_TYPES]
    f += [
        Feature("u_distinct_items", "user", "distinct items touched"),
        Feature("u_sessions", "user", "distinct sessions"),
        Feature("u_hours_since_last", "user", "hours since the user's last event"),
        Feature("u_mean_price", "user", "mean price of items touched"),
    ]
    f += [Feature(f"u_share_{d}", "user", f"share of events on {d}") for d in DEVICES]
    return f


def _item() -> list[Feature]:
    f = [Feature("i_events", "item", "events before the as-of time")]
    f += [Feature(f"i_events_{d}d", "item", f"events in the last {d} day(s)") for d in WINDOWS_DAYS]
    f += [
        Feature("i_users", "item", "distinct users"),
        Feature("i_purchase_rate", "item", "purchases / events"),
        Feature("i_trend", "item", "events last day x7 / events last 7 days"),
        Feature("i_price", "item", "price"),
        Feature("i_age_days", "item", "days since the item was created"),
    ]
    return f


CROSS = [
    Feature("x_retrieval_score", "user_item", "dot product of user and item vectors"),
    Feature("x_retrieval_rank", "user_item", "rank of the item in retrieval (0 = best)"),
    Feature("x_category_affinity", "user_item", "share of the user's events in the item's category"),
    Feature("x_price_ratio", "user_item", "item price / user's mean price"),
]
CONTEXT = [
    Feature("c_hour_sin", "context", "hour of day, cyclical (sine)"),
    Feature("c_hour_cos", "context", "hour of day, cyclical (cosine)"),
    Feature("c_weekday_sin", "context", "day of week, cyclical (sine)"),
    Feature("c_weekday_cos", "context", "day of week, cyclical (cosine)"),
] + [Feature(f"c_device_{d}", "context", f"request comes from {d} (NaN = unknown)") for d in DEVICES]

USER_FEATURES = _user()
ITEM_FEATURES = _item()
RANKING_FEATURES = USER_FEATURES + ITEM_FEATURES + CROSS + CONTEXT
NAMES = [f.name for f in RANKING_FEATURES]


@dataclass(frozen=True)
class Context:
    """What the request knows besides the user: when, and from which device."""

    now_ms: int
    device: str | None = None


def context_row(ctx: Context) -> np.ndarray:
    hours = (ctx.now_ms % DAY_MS) / HOUR_MS
    weekday = ((ctx.now_ms // DAY_MS) + 3) % 7  # 1970-01-01 was a Thursday (3 = Mon-based index)
    row = [np.sin(2 * np.pi * hours / 24), np.cos(2 * np.pi * hours / 24),
           np.sin(2 * np.pi * weekday / 7), np.cos(2 * np.pi * weekday / 7)]
    row += [np.nan if ctx.device not in DEVICES else float(ctx.device == d) for d in DEVICES]
    return np.asarray(row, dtype=np.float32)


def feature_matrix(model: Model, user_pos: int | None, item_pos: np.ndarray,
                   scores: np.ndarray, ctx: Context) -> np.ndarray:
    """Rows of RANKING_FEATURES for one user and their candidate items (in retrieval order)."""
    n = len(item_pos)
    if user_pos is None:
        user = np.full(len(USER_FEATURES), np.nan, dtype=np.float32)
        affinity = np.full(n, np.nan, dtype=np.float32)
    else:
        user = model.user_features[user_pos]
        affinity = model.user_category_share[user_pos, model.item_category[item_pos]]
    items = model.item_features[item_pos]
    price_col = ITEM_INDEX["i_price"]
    user_price = user[USER_INDEX["u_mean_price"]]
    with np.errstate(divide="ignore", invalid="ignore"):
        price_ratio = items[:, price_col] / user_price
    cross = np.column_stack([scores, np.arange(n, dtype=np.float32), affinity, price_ratio])
    return np.hstack([np.broadcast_to(user, (n, len(user))), items, cross,
                      np.broadcast_to(context_row(ctx), (n, len(CONTEXT)))]).astype(np.float32)


USER_INDEX = {f.name: j for j, f in enumerate(USER_FEATURES)}
ITEM_INDEX = {f.name: j for j, f in enumerate(ITEM_FEATURES)}
