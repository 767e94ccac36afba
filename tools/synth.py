"""Synthetic data with known structure: the default dataset for the demo, tests and benchmarks.

Items belong to categories and carry a latent vector near their category's centroid plus a
power-law popularity. Users have tastes over one to three categories, power-law activity,
a preferred device and an hour-of-day rhythm. Each session focuses on one of the user's
categories; within it an item is picked by popularity and affinity to the user (Gumbel-max
over a few popularity-sampled candidates, so the whole thing stays vectorised at 10 M events).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from contracts.validation import DEVICES

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
LATENT_DIM = 16
EVENT_TYPES_WEIGHTS = {"view": 0.6, "click": 0.25, "add_to_cart": 0.1, "purchase": 0.05}


@dataclass(frozen=True)
class Size:
    items: int
    users: int
    categories: int
    days: int
    sessions_per_user: float  # mean; the tail follows a power law
    events_per_session: float


SIZES: dict[str, Size] = {
    "tiny": Size(items=400, users=800, categories=8, days=21, sessions_per_user=5, events_per_session=4),
    "demo": Size(items=3_000, users=8_000, categories=20, days=28, sessions_per_user=6, events_per_session=5),
    "bench": Size(items=100_000, users=500_000, categories=50, days=28, sessions_per_user=4,
                  events_per_session=5),
}


@dataclass
class Dataset:
    items: pd.DataFrame
    users: pd.DataFrame
    events: pd.DataFrame


def _hour_profile(rng: np.random.Generator, device: str) -> np.ndarray:
    """Probability of each hour of day: desktops peak in office hours, phones and TVs at night."""
    hours = np.arange(24)
    peak = {"desktop": 11, "mobile": 20, "tablet": 19, "tv": 21, "unknown": 15}[device]
    p = np.exp(-0.5 * ((hours - peak + 12) % 24 - 12) ** 2 / 9.0) + 0.05
    return p / p.sum()


def generate(size: str = "tiny", seed: int = 7, end_ms: int | None = None) -> Dataset:
    """Build a dataset; ``end_ms`` is the time of the last event (default: now, on the hour)."""
    spec = SIZES[size]
    rng = np.random.default_rng(seed)
    end_ms = end_ms or (pd.Timestamp.now(tz="UTC").floor("h").value // 1_000_000)
    start_ms = end_ms - spec.days * DAY_MS

    # Items: category, latent vector near the category centroid, power-law popularity.
    centroids = rng.normal(size=(spec.categories, LATENT_DIM))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    cat_weights = rng.dirichlet(np.full(spec.categories, 2.0))
    item_cat = rng.choice(spec.categories, size=spec.items, p=cat_weights)
    item_vec = centroids[item_cat] + 0.35 * rng.normal(size=(spec.items, LATENT_DIM))
    popularity = rng.pareto(1.2, size=spec.items) + 0.05
    cat_price = rng.lognormal(3.0, 0.8, size=spec.categories)
    price = np.round(cat_price[item_cat] * rng.lognormal(0, 0.3, size=spec.items), 2)
    created = start_ms - rng.integers(0, 180 * DAY_MS, size=spec.items)
    item_ids = np.array([f"i{j:06d}" for j in range(spec.items)])
    items = pd.DataFrame({
        "item_id": item_ids, "category": [f"c{c:02d}" for c in item_cat], "price": price,
        "created_at": created, "title": [f"Item {j} of c{c:02d}" for j, c in enumerate(item_cat)],
    })

    # Users: tastes over 1-3 categories, power-law activity, a preferred device.
    n_tastes = rng.integers(1, 4, size=spec.users)
    tastes = np.zeros((spec.users, spec.categories))
    for n in (1, 2, 3):
        who = np.flatnonzero(n_tastes == n)
        picks = np.argsort(rng.random((len(who), spec.categories)), axis=1)[:, :n]
        weights = rng.dirichlet(np.full(n, 1.5), size=len(who))
        rows = np.zeros((len(who), spec.categories))
        np.put_along_axis(rows, picks, weights, axis=1)
        tastes[who] = rows
    user_vec = tastes @ centroids + 0.2 * rng.normal(size=(spec.users, LATENT_DIM))
    activity = rng.pareto(1.3, size=spec.users) + 1.0
    # Power law, capped: real logs have power users, not one user with half the traffic.
    sessions_per_user = np.clip(np.round(activity / activity.mean() * spec.sessions_per_user),
                                1, 40 * spec.sessions_per_user).astype(int)
    device_names = [d for d in DEVICES if d != "unknown"]
    user_device = rng.choice(len(device_names), size=spec.users, p=[0.45, 0.4, 0.1, 0.05])
    user_ids = np.array([f"u{u:07d}" for u in range(spec.users)])
    users = pd.DataFrame({
        "user_id": user_ids, "signup_at": start_ms - rng.integers(0, 365 * DAY_MS, size=spec.users),
        "country": rng.choice(["GB", "DE", "FR", "US", "NL"], size=spec.users),
    })

    # Sessions: owner, focus category, device, start time (day uniform, hour by device rhythm).
    s_user = np.repeat(np.arange(spec.users), sessions_per_user)
    n_sess = len(s_user)
    cum = tastes[s_user].cumsum(axis=1)
    s_cat = (rng.random((n_sess, 1)) < cum).argmax(axis=1)
    s_device = np.where(rng.random(n_sess) < 0.85, user_device[s_user], rng.integers(0, len(device_names), n_sess))
    s_hour = np.empty(n_sess, dtype=np.int64)
    for d, name in enumerate(device_names):
        idx = np.flatnonzero(s_device == d)
        s_hour[idx] = rng.choice(24, size=len(idx), p=_hour_profile(rng, name))
    s_day = rng.integers(0, spec.days, size=n_sess)
    s_start = start_ms + s_day * DAY_MS + s_hour * HOUR_MS + rng.integers(0, HOUR_MS, size=n_sess)
    s_start = np.minimum(s_start, end_ms - HOUR_MS)
    s_len = rng.geometric(1.0 / spec.events_per_session, size=n_sess)
    s_anon = rng.random(n_sess) < 0.05
    # A quarter of sessions drift: from half-way on they focus on a second category.
    s_cat2 = (rng.random((n_sess, 1)) < cum).argmax(axis=1)
    s_cat2 = np.where(s_cat2 == s_cat, rng.choice(spec.categories, size=n_sess, p=cat_weights), s_cat2)
    s_switch = rng.random(n_sess) < 0.25

    # Events: each picks the session's category (80 %) or any category, then the best of
    # 8 popularity-sampled items of it by affinity to the user (Gumbel-max).
    e_sess = np.repeat(np.arange(n_sess), s_len)
    n_ev = len(e_sess)
    e_user = s_user[e_sess]
    step = np.arange(n_ev) - np.repeat(np.cumsum(s_len) - s_len, s_len)  # position in session
    focus = np.where(s_switch[e_sess] & (step >= s_len[e_sess] // 2), s_cat2[e_sess], s_cat[e_sess])
    e_cat = np.where(rng.random(n_ev) < 0.8, focus, rng.choice(spec.categories, size=n_ev, p=cat_weights))
    order = np.argsort(item_cat, kind="stable")
    bounds = np.searchsorted(item_cat[order], np.arange(spec.categories + 1))
    cum_pop = np.zeros(spec.items)
    for c in range(spec.categories):
        seg = order[bounds[c]:bounds[c + 1]]
        cum_pop[bounds[c]:bounds[c + 1]] = np.cumsum(popularity[seg]) / max(popularity[seg].sum(), 1e-9)
    e_item = np.empty(n_ev, dtype=np.int64)
    for lo in range(0, n_ev, 500_000):
        hi = min(n_ev, lo + 500_000)
        cats = e_cat[lo:hi]
        u = rng.random((hi - lo, 8))
        cand = np.empty((hi - lo, 8), dtype=np.int64)
        for c in np.unique(cats):
            hit = np.flatnonzero(cats == c)
            span = slice(bounds[c], bounds[c + 1])
            pos = np.searchsorted(cum_pop[span], u[hit])
            cand[hit] = order[span][np.minimum(pos, bounds[c + 1] - bounds[c] - 1)]
        affinity = np.einsum("nkd,nd->nk", item_vec[cand], user_vec[e_user[lo:hi]])
        pick = (2.0 * affinity + rng.gumbel(size=affinity.shape)).argmax(axis=1)
        e_item[lo:hi] = cand[np.arange(hi - lo), pick]
    e_ts = s_start[e_sess] + step * rng.integers(10_000, 180_000, size=n_ev)
    e_ts = np.minimum(e_ts, end_ms - 1)
    types = np.array(list(EVENT_TYPES_WEIGHTS))
    e_type = types[rng.choice(len(types), size=n_ev, p=list(EVENT_TYPES_WEIGHTS.values()))]
    events = pd.DataFrame({
        "event_id": [f"e{seed}-{j:09d}" for j in range(n_ev)],
        "user_id": np.where(s_anon[e_sess], np.full(n_ev, None, dtype=object), user_ids[e_user]),
        "session_id": [f"s{seed}-{j:08d}" for j in e_sess],
        "item_id": item_ids[e_item],
        "event_type": e_type,
        "timestamp": e_ts.astype(np.int64),
        "device": np.array(device_names)[s_device[e_sess]],
        "value": np.where(e_type == "purchase", price[e_item], np.nan),
    })
    events["value"] = events["value"].astype(object).where(events["value"].notna(), None)
    events = events.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return Dataset(items=items, users=users, events=events)


def corrupt(events: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` realistic producer mistakes (seconds timestamps, unknown types, bad ids) to show the DLQ."""
    rng = np.random.default_rng(seed)
    bad = events.sample(n=min(n, len(events)), random_state=seed).copy()
    bad["event_id"] = [f"bad-{j}" for j in range(len(bad))]
    kind = rng.integers(0, 3, size=len(bad))
    bad.loc[kind == 0, "timestamp"] = bad.loc[kind == 0, "timestamp"] // 1000
    bad.loc[kind == 1, "event_type"] = "clik"
    bad.loc[kind == 2, "session_id"] = "s\x00broken"
    return bad


def write(ds: Dataset, landing: Path, tag: str = "synthetic") -> dict[str, Path]:
    """Write the dataset as Parquet landing files, the way a customer's export would arrive."""
    out = {}
    for name, frame in (("items", ds.items), ("users", ds.users), ("events", ds.events)):
        path = landing / name / f"{tag}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
        out[name] = path
    return out


def next_hour(size: str, seed: int, end_ms: int) -> pd.DataFrame:
    """The hour of events after ``end_ms``, from the same generator (same items, users and
    tastes: the same seed, one hour later); ids are prefixed so they never collide with the
    dataset that ended at ``end_ms``."""
    events = generate(size, seed, end_ms + HOUR_MS).events
    hour = events[events["timestamp"] >= end_ms].copy()
    hour["event_id"] = f"h{end_ms}-" + hour["event_id"]
    hour["session_id"] = f"h{end_ms}-" + hour["session_id"]
    return hour.reset_index(drop=True)
