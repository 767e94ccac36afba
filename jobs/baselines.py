"""Strong simple baselines: the systems Blink has to beat (measured by jobs/protocol.py).

These are the numbers Blink's two-stage recommender has to beat. Everything here is plain
numpy/scipy (plus `implicit` for ALS), independent of Spark and of the rest of Blink, so it runs
on any interactions table:

    user_id (str), item_id (str), timestamp (int, epoch ms), weight (float)

Every system answers `Query`s: `user_id` names a user whose training data the system may use
(None or unknown: nothing), `history` lists the item ids consumed since, oldest first. Known users
are asked with `Query(user_id=u)`, new users after N clicks with `Query(history=first_n_items)`,
so matrix models, session models and popularity all answer the same questions.

Scores are ranked with ties broken by all-time popularity in the training data. This doubles as
backfill: a system with no evidence for a query (all scores 0) falls back to popularity instead of
to an arbitrary order, the same way for every system.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

COLUMNS = ["user_id", "item_id", "timestamp", "weight"]
DAY_MS = 86_400_000
EASE_MAX_ITEMS = 30_000  # a dense items x items inverse beyond this needs > 7 GB per copy
_BATCH = 512  # queries scored at once: bounds the dense (queries x items) score matrix

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class SkipBaseline(Exception):
    """A baseline cannot run on this data (the message says why); report it, do not fail."""


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def interactions(df: pd.DataFrame) -> pd.DataFrame:
    """Check and normalise an interactions table: the four columns, typed, sorted by time.

    The stable sort keeps the input order among equal timestamps (e.g. lines of one invoice).
    """
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"interactions need columns {COLUMNS}; missing {sorted(missing)}")
    out = pd.DataFrame({
        "user_id": df["user_id"].astype(str),
        "item_id": df["item_id"].astype(str),
        "timestamp": df["timestamp"].astype(np.int64),
        "weight": df["weight"].astype(np.float64),
    })
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class UserItemMatrix:
    """A CSR users x items matrix of summed weights, with its index maps.

    `users[row]` / `items[col]` give ids; `users.get_indexer(ids)` gives rows (-1 if unknown).
    """

    matrix: sp.csr_matrix
    users: pd.Index
    items: pd.Index


def user_item_matrix(df: pd.DataFrame, items: pd.Index | None = None) -> UserItemMatrix:
    """Build the users x items CSR matrix; repeated (user, item) pairs sum their weights.

    With `items` given, columns follow it and interactions with other items are dropped.
    """
    user_codes, users = pd.factorize(df["user_id"], sort=True)
    if items is None:
        item_codes, items = pd.factorize(df["item_id"], sort=True)
    else:
        item_codes = items.get_indexer(df["item_id"])
    keep = item_codes >= 0
    matrix = sp.csr_matrix(
        (df["weight"].to_numpy(np.float64)[keep], (user_codes[keep], item_codes[keep])),
        shape=(len(users), len(items)),
    )
    matrix.sum_duplicates()
    return UserItemMatrix(matrix, pd.Index(users), pd.Index(items))


@dataclass(frozen=True)
class Query:
    """What to recommend for: a user's training data (by id) and/or items consumed since, in order."""

    user_id: str | None = None
    history: tuple[str, ...] = ()


class Recommender(Protocol):
    """The interface every baseline shares."""

    def fit(self, train: pd.DataFrame) -> Self: ...

    def recommend(self, queries: Sequence[Query], k: int, exclude_seen: bool = True) -> list[list[str]]: ...


# ---------------------------------------------------------------------------------------------
# Shared plumbing
# ---------------------------------------------------------------------------------------------


class Baseline:
    """Index the training data once; subclasses only turn queries into item scores."""

    data: UserItemMatrix
    sequences: list[IntArray]  # per user row: item columns in time order (session models use it)
    pop_rank: IntArray  # per item column: 0 = most interactions in training

    def fit(self, train: pd.DataFrame) -> Self:
        """Fit on an interactions table (see `interactions`)."""
        train = interactions(train)
        self.data = user_item_matrix(train)
        user_rows = self.data.users.get_indexer(train["user_id"])
        item_cols = self.data.items.get_indexer(train["item_id"])
        counts = np.bincount(item_cols, minlength=len(self.data.items))
        order = np.argsort(-counts, kind="stable")
        self.pop_rank = np.empty_like(order)
        self.pop_rank[order] = np.arange(len(order))
        # train is time-sorted, so a stable sort by user keeps each user's events in time order
        by_user = np.argsort(user_rows, kind="stable")
        bounds = np.searchsorted(user_rows[by_user], np.arange(len(self.data.users) + 1))
        cols = item_cols[by_user]
        self.sequences = [cols[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self._fit(train)
        return self

    def _fit(self, train: pd.DataFrame) -> None:
        """Model-specific fitting; `self.data` etc. are ready."""

    def _scores(self, queries: Sequence[Query], rows: sp.csr_matrix) -> FloatArray:
        """Scores (queries x items); `rows` holds each query's known items and weights."""
        raise NotImplementedError

    def recommend(self, queries: Sequence[Query], k: int, exclude_seen: bool = True) -> list[list[str]]:
        """Top-k item ids per query; seen = the user's training items plus the history."""
        out: list[list[str]] = []
        for start in range(0, len(queries), _BATCH):
            chunk = queries[start:start + _BATCH]
            rows = self._query_rows(chunk)
            scores = np.asarray(self._scores(chunk, rows), dtype=np.float64)
            for r, score in enumerate(scores):
                if exclude_seen:
                    score[rows.indices[rows.indptr[r]:rows.indptr[r + 1]]] = -np.inf
                # primary key: score (descending); ties: popularity. Seen items (-inf) go last.
                top = np.lexsort((self.pop_rank, -score))[:k]
                out.append([str(self.data.items[c]) for c in top if score[c] > -np.inf])
        return out

    def _query_rows(self, queries: Sequence[Query]) -> sp.csr_matrix:
        """Each query as a row over items: the user's training row, plus history items at weight 1."""
        matrix = self.data.matrix
        user_rows = self.data.users.get_indexer([q.user_id for q in queries])
        rows: list[IntArray] = []
        cols: list[IntArray] = []
        vals: list[FloatArray] = []
        for r, (q, u) in enumerate(zip(queries, user_rows, strict=True)):
            known = matrix.indices[matrix.indptr[u]:matrix.indptr[u + 1]] if u >= 0 else np.empty(0, np.int64)
            if u >= 0:
                cols.append(known)
                vals.append(matrix.data[matrix.indptr[u]:matrix.indptr[u + 1]])
            history = self._history_cols(q)
            new = np.setdiff1d(history, known)  # items unknown to training cannot be scored
            cols.append(new)
            vals.append(np.ones(len(new)))
            rows.append(np.full(len(known) + len(new), r))
        return _csr(rows, cols, vals, (len(queries), len(self.data.items)))

    def _history_cols(self, q: Query) -> IntArray:
        cols = self.data.items.get_indexer(list(q.history))
        return np.asarray(cols[cols >= 0], dtype=np.int64)

    def _sequence(self, q: Query) -> IntArray:
        """The query's items in time order: the user's training events, then the history."""
        u = self.data.users.get_indexer([q.user_id])[0]
        past = self.sequences[u] if u >= 0 else np.empty(0, np.int64)
        return np.concatenate([past, self._history_cols(q)])

    def _decayed_rows(self, queries: Sequence[Query], last: int | None) -> sp.csr_matrix:
        """Each query's sequence (the last `last` events) as a row with linearly decaying weights.

        Position p of L (0 = oldest) weighs (p + 1) / L: the latest click counts most, since
        it says most about what the user wants next (the V-SKNN weighting).
        """
        rows: list[IntArray] = []
        cols: list[IntArray] = []
        vals: list[FloatArray] = []
        for r, q in enumerate(queries):
            seq = self._sequence(q)
            seq = seq[-last:] if last else seq
            rows.append(np.full(len(seq), r))
            cols.append(seq)
            vals.append(np.arange(1, len(seq) + 1) / max(len(seq), 1))
        return _csr(rows, cols, vals, (len(queries), len(self.data.items)))


def _csr(rows: list[IntArray], cols: list[IntArray], vals: list[FloatArray], shape: tuple[int, int]) -> sp.csr_matrix:
    """Assemble a CSR matrix from pieces; duplicate entries are summed."""
    if not rows:
        return sp.csr_matrix(shape)
    out = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)
    out.sum_duplicates()
    return out


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------


class Popularity(Baseline):
    """Most interactions in training; with `days`, counted over the last `days` before the cut only.

    The cut is `as_of_ms` or, by default, just after the last training event. Items tied in the
    window (e.g. none) are ordered by all-time popularity.
    """

    def __init__(self, days: float | None = None, as_of_ms: int | None = None) -> None:
        self.days = days
        self.as_of_ms = as_of_ms

    def _fit(self, train: pd.DataFrame) -> None:
        self.recent = np.zeros(len(self.data.items))
        if self.days is not None:
            as_of = self.as_of_ms if self.as_of_ms is not None else int(train["timestamp"].max()) + 1
            window = train[train["timestamp"] >= as_of - self.days * DAY_MS]
            cols = self.data.items.get_indexer(window["item_id"])
            self.recent = np.bincount(cols, minlength=len(self.data.items)).astype(np.float64)

    def _scores(self, queries: Sequence[Query], rows: sp.csr_matrix) -> FloatArray:
        return np.tile(self.recent, (len(queries), 1))


class ALS(Baseline):
    """Implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008) via `implicit` on CPU.

    Confidence is `alpha * weight` on observed pairs (implicit's convention). Known users use
    their fitted factors; other queries get factors solved from their items with the item
    factors fixed (one ALS half-step), so new users after a few clicks are answered too.
    """

    def __init__(self, factors: int = 64, regularization: float = 0.1, alpha: float = 10.0,
                 iterations: int = 15, seed: int = 0, threads: int = 1) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.threads = threads

    def _fit(self, train: pd.DataFrame) -> None:
        from implicit.als import AlternatingLeastSquares

        self.model = AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization, alpha=self.alpha,
            iterations=self.iterations, random_state=self.seed, num_threads=self.threads, use_gpu=False,
        )
        self.model.fit(self.data.matrix.astype(np.float32), show_progress=False)

    def _scores(self, queries: Sequence[Query], rows: sp.csr_matrix) -> FloatArray:
        users = self.data.users.get_indexer([q.user_id for q in queries])
        fitted = np.array([u >= 0 and not q.history for q, u in zip(queries, users, strict=True)])
        factors = np.zeros((len(queries), self.factors), dtype=np.float64)
        factors[fitted] = self.model.user_factors[users[fitted]]
        solve = np.flatnonzero(~fitted)
        if len(solve):
            factors[solve] = self.model.recalculate_user(solve, rows[solve].astype(np.float32))
        return np.asarray(factors @ self.model.item_factors.T, dtype=np.float64)


class EASE(Baseline):
    """EASE (Steck 2019): item-item weights B = I - P / diag(P), P = (X'X + lambda I)^-1, diag(B) = 0.

    Closed form, so the only knob is `lam`. The dense items x items inverse is the cost: above
    `max_items` items, fitting raises `SkipBaseline` instead of running out of memory.
    """

    def __init__(self, lam: float = 500.0, max_items: int = EASE_MAX_ITEMS) -> None:
        self.lam = lam
        self.max_items = max_items

    def _fit(self, train: pd.DataFrame) -> None:
        n_items = len(self.data.items)
        if n_items > self.max_items:
            raise SkipBaseline(f"EASE skipped: {n_items:,} items > {self.max_items:,} (dense inverse too large)")
        x = self.data.matrix
        gram = (x.T @ x).toarray()
        gram[np.diag_indices(n_items)] += self.lam
        p = np.linalg.inv(gram)
        self.b = p / -np.diag(p)  # column j divided by -P_jj
        self.b[np.diag_indices(n_items)] = 0.0

    def _scores(self, queries: Sequence[Query], rows: sp.csr_matrix) -> FloatArray:
        return np.asarray(rows @ self.b, dtype=np.float64)


class ItemKNN(Baseline):
    """Item-based kNN: cosine similarity of item columns, each item keeps its top `neighbours`.

    score(j) = sum over the user's items i of x_ui * sim(i, j), for j among i's neighbours.
    Similarities are computed a block of items at a time so memory stays at items x block.
    """

    def __init__(self, neighbours: int = 100, shrink: float = 0.0, block: int = 1024) -> None:
        self.neighbours = neighbours
        self.shrink = shrink  # damps similarities supported by few co-occurrences
        self.block = block

    def _fit(self, train: pd.DataFrame) -> None:
        x = self.data.matrix.tocsc()
        n = x.shape[1]
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        keep = min(self.neighbours, n - 1)
        rows: list[IntArray] = []
        cols: list[IntArray] = []
        vals: list[FloatArray] = []
        for start in range(0, n, self.block):
            src = np.arange(start, min(start + self.block, n))
            sim = (x.T @ x[:, src]).toarray()  # items x block: dot products with each source item
            sim /= np.outer(norms, norms[src]) + self.shrink + 1e-12
            sim[src, np.arange(len(src))] = 0.0  # an item is not its own neighbour
            if keep <= 0:
                continue
            top = np.argpartition(-sim, keep - 1, axis=0)[:keep]  # keep x block
            top_vals = np.take_along_axis(sim, top, axis=0)
            positive = top_vals > 0
            rows.append(np.broadcast_to(src, top.shape)[positive])
            cols.append(top[positive])
            vals.append(top_vals[positive])
        self.sim = _csr(rows, cols, vals, (n, n))  # row i: i's neighbours

    def _scores(self, queries: Sequence[Query], rows: sp.csr_matrix) -> FloatArray:
        return np.asarray((rows @ self.sim).toarray(), dtype=np.float64)


class CoVisitation(Baseline):
    """Item-to-item co-visitation: how often item j follows item i in a user's sequence.

    A pair counts when j comes at most `max_steps` events after i and within `window_ms`;
    items with the same timestamp (one basket) count both ways, and `backward` weighs j-before-i.
    Row i is normalised to sum to 1 (P(next = j | i)), so a rarely seen anchor counts as much as
    a popular one. A query scores the sum over its last `last` items of P(. | item) with the
    linear recency weights of `_decayed_rows`.
    """

    def __init__(self, window_ms: int = DAY_MS, max_steps: int = 5, backward: float = 0.0, last: int = 10) -> None:
        self.window_ms = window_ms
        self.max_steps = max_steps
        self.backward = backward
        self.last = last

    def _fit(self, train: pd.DataFrame) -> None:
        users = self.data.users.get_indexer(train["user_id"])
        order = np.argsort(users, kind="stable")  # per user, time order (train is time-sorted)
        user = users[order]
        item = self.data.items.get_indexer(train["item_id"])[order]
        ts = train["timestamp"].to_numpy(np.int64)[order]
        rows: list[IntArray] = []
        cols: list[IntArray] = []
        vals: list[FloatArray] = []
        for step in range(1, self.max_steps + 1):
            a, b = slice(None, -step), slice(step, None)
            ok = (user[a] == user[b]) & (ts[b] - ts[a] <= self.window_ms) & (item[a] != item[b])
            first, then = item[a][ok], item[b][ok]
            back = np.where(ts[b][ok] == ts[a][ok], 1.0, self.backward)
            rows += [first, then]
            cols += [then, first]
            vals += [np.ones(len(first)), back]
        counts = _csr(rows, cols, vals, (len(self.data.items),) * 2)
        counts.eliminate_zeros()
        totals = np.asarray(counts.sum(axis=1)).ravel()
        self.next = sp.diags(1.0 / np.maximum(totals, 1e-12)) @ counts

    def _scores(self, queries: Sequence[Query], rows: sp.csr_matrix) -> FloatArray:
        return np.asarray((self._decayed_rows(queries, self.last) @ self.next).toarray(), dtype=np.float64)


class SessionKNN(Baseline):
    """V-SKNN (Ludewig & Jannach 2018): recommend what the most similar past sessions contained.

    Past sessions are each user's training events split where the gap exceeds `session_gap_ms`
    (None: one session per user). Similarity = sum of the query's linearly decayed weights over
    the items a past session shares with it. Among sessions sharing any item, the `sample_size`
    most recent are candidates and the `neighbours` most similar vote: score(j) = sum of their
    similarities over sessions containing j. A known user's own sessions are not neighbours.
    """

    def __init__(self, neighbours: int = 100, sample_size: int = 1000, session_gap_ms: int | None = 3_600_000,
                 last: int | None = None) -> None:
        self.neighbours = neighbours
        self.sample_size = sample_size
        self.session_gap_ms = session_gap_ms
        self.last = last

    def _fit(self, train: pd.DataFrame) -> None:
        users = self.data.users.get_indexer(train["user_id"])
        order = np.argsort(users, kind="stable")
        user = users[order]
        item = self.data.items.get_indexer(train["item_id"])[order]
        ts = train["timestamp"].to_numpy(np.int64)[order]
        starts = np.r_[True, user[1:] != user[:-1]]
        if self.session_gap_ms is not None:
            starts |= np.r_[True, np.diff(ts) > self.session_gap_ms]
        session = np.cumsum(starts) - 1
        n_sessions = int(session[-1]) + 1 if len(session) else 0
        self.sessions = sp.csr_matrix((np.ones(len(item)), (session, item)), shape=(n_sessions, len(self.data.items)))
        self.sessions.data[:] = 1.0  # binary: an item seen twice in a session counts once
        self.owner = user[starts]
        self.ended = np.zeros(n_sessions, dtype=np.int64)
        np.maximum.at(self.ended, session, ts)

    def _scores(self, queries: Sequence[Query], rows: sp.csr_matrix) -> FloatArray:
        sims = (self._decayed_rows(queries, self.last) @ self.sessions.T).tocsr()
        users = self.data.users.get_indexer([q.user_id for q in queries])
        out = np.zeros((len(queries), len(self.data.items)))
        for r, u in enumerate(users):
            cand = sims.indices[sims.indptr[r]:sims.indptr[r + 1]]
            sim = sims.data[sims.indptr[r]:sims.indptr[r + 1]]
            mine = self.owner[cand] == u
            cand, sim = cand[~mine], sim[~mine]
            if len(cand) > self.sample_size:  # the most recent sessions: tastes drift
                recent = np.argsort(-self.ended[cand], kind="stable")[:self.sample_size]
                cand, sim = cand[recent], sim[recent]
            if len(cand) > self.neighbours:
                best = np.argsort(-sim, kind="stable")[:self.neighbours]
                cand, sim = cand[best], sim[best]
            out[r] = self.sessions[cand].T @ sim
        return out
