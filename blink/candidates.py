"""Candidate sources and their union: the first stage of the recommend pipeline.

Four sources, each strong where the others are weak:

- ``ann``: the query vector's nearest items (ScaNN) — long-term taste, or the session's drift;
- ``covisit``: items that followed the user's or session's most recent items in other
  people's sequences — what comes next, even for items too new or rare for good vectors;
- ``popular``: trending at the cut-off — what a newcomer, or anyone, is likely to take;
- ``sknn``: session-kNN (Jannach & Ludewig's V-SKNN, on histories): the users whose histories
  share most of the recent items (recent ones weigh more) vote for the rest of what they took —
  a strong simple baseline on session data, here one more source the ranker can weigh.

Each candidate keeps its rank (and score) in every source that proposed it; these become the
``source`` ranker features (blink/feature_registry.py), so the ranker learns which source to
trust for which request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from blink.feature_registry import SOURCE

if TYPE_CHECKING:
    from blink.config import Config
    from blink.model import Model
    from blink.retrieval import Retriever

SOURCES = ("ann", "covisit", "popular", "sknn")
_COL = {f.name: j for j, f in enumerate(SOURCE)}
RANK_COLUMNS = [_COL[f"x_src_{s}_rank"] for s in SOURCES]  # within the SOURCE block
RRF_K = 60.0  # the usual reciprocal-rank-fusion constant: past rank ~60 a source adds little
KINDS = ("user", "session")  # requests with a known user's vector / from a session or history only


def fused(ranks: np.ndarray, weights: tuple[float, ...]) -> np.ndarray:
    """Weighted reciprocal-rank fusion: sum over sources of weight / (RRF_K + rank).

    ``ranks`` has one column per source in SOURCES order, NaN where a source did not propose
    the candidate. The batch ranker task tunes the weights with this same function.
    """
    w = np.asarray(weights, np.float32)
    return np.nansum(w / (RRF_K + ranks), axis=1).astype(np.float32)


@dataclass(frozen=True)
class Fusion:
    """How a version orders candidates, per request kind (see KINDS).

    ``weights`` are the source weights of :func:`fused`; ``ranker`` says whether the XGBoost
    ranker beat that fused order on held-out groups of this kind (if not, the fused order is
    the answer: a ranker that cannot beat its own candidates' order must not be served).
    """

    weights: dict[str, tuple[float, ...]]
    ranker: dict[str, bool]

    @classmethod
    def default(cls) -> Fusion:
        """Equal weights, ranker on: what a version without a fusion.json means."""
        return cls({k: (1.0,) * len(SOURCES) for k in KINDS}, {k: True for k in KINDS})

    def to_json(self) -> dict[str, object]:
        return {"weights": {k: list(v) for k, v in self.weights.items()}, "ranker": self.ranker}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fusion:
        """A version written before a source existed gives that source weight 0."""
        pad = [0.0] * len(SOURCES)
        return cls({k: tuple((list(map(float, v)) + pad)[: len(SOURCES)]) for k, v in data["weights"].items()},
                   {k: bool(v) for k, v in data["ranker"].items()})


@dataclass(frozen=True)
class CoVisitTable:
    """Item -> co-visited items, as CSR over item positions: row p is
    ``indices[indptr[p]:indptr[p + 1]]`` with ``scores`` alike, best first."""

    indptr: np.ndarray
    indices: np.ndarray
    scores: np.ndarray

    @classmethod
    def from_lists(cls, n_items: int, rows: dict[int, tuple[np.ndarray, np.ndarray]]) -> CoVisitTable:
        counts = np.zeros(n_items + 1, np.int64)
        for p, (nbrs, _) in rows.items():
            counts[p + 1] = len(nbrs)
        indptr = np.cumsum(counts)
        indices = np.empty(indptr[-1], np.int64)
        scores = np.empty(indptr[-1], np.float32)
        for p, (nbrs, sc) in rows.items():
            indices[indptr[p]:indptr[p + 1]] = nbrs
            scores[indptr[p]:indptr[p + 1]] = sc
        return cls(indptr, indices, scores)


@dataclass(frozen=True)
class SourceSizes:
    """How many candidates each source proposes (before the union)."""

    ann: int = 500
    covisit: int = 100
    popular: int = 50
    sknn: int = 100
    neighbours: int = 100

    @classmethod
    def from_config(cls, cfg: Config, ann: int | None = None) -> SourceSizes:
        """The configured sizes; ``ann`` overrides retrieval.candidates (ranker training uses fewer)."""
        c = cfg.candidates
        return cls(ann if ann is not None else cfg.retrieval.candidates, c.covisit_candidates, c.popular_candidates,
                   c.sknn_candidates, c.sknn_neighbours)


@dataclass(frozen=True)
class Candidates:
    """The union of the sources for one request, ordered by the query-vector score.

    ``scores`` is the dot product of each candidate with the query vector (NaN without one);
    ``sources`` holds the SOURCE feature columns, one row per candidate.
    """

    positions: np.ndarray
    scores: np.ndarray
    sources: np.ndarray

    def proposed_by(self, source: str) -> np.ndarray:
        """Boolean mask of the candidates ``source`` proposed."""
        return ~np.isnan(self.sources[:, _COL[f"x_src_{source}_rank"]])

    def only(self, source: str) -> Candidates:
        """The candidates of one source, in that source's own order."""
        rows = np.flatnonzero(self.proposed_by(source))
        rows = rows[np.argsort(self.sources[rows, _COL[f"x_src_{source}_rank"]], kind="stable")]
        return Candidates(self.positions[rows], self.scores[rows], self.sources[rows])

    def fused_scores(self, weights: tuple[float, ...]) -> np.ndarray:
        """The sources' ranks fused (see :func:`fused`): the order served without a ranker."""
        return fused(self.sources[:, RANK_COLUMNS], weights)


def gather(model: Model, vector: np.ndarray | None, recent: np.ndarray, exclude: np.ndarray,
           sizes: SourceSizes, retriever: Retriever | None, user_pos: int | None = None) -> Candidates:
    """Every source's candidates for one request, minus ``exclude``; see the module doc.
    ``user_pos`` (a known user) is left out of their own session-kNN neighbours."""
    ann = _ann(model, vector, exclude, sizes.ann, retriever) if vector is not None else np.empty(0, np.int64)
    co_pos, co_score = _covisit(model, recent, exclude, sizes.covisit)
    popular = model.trending_positions[~np.isin(model.trending_positions, exclude)][: sizes.popular]
    kn_pos, kn_score = _sknn(model, recent, exclude, sizes.sknn, sizes.neighbours, user_pos)
    union = np.concatenate([ann, co_pos, popular, kn_pos])
    _, first = np.unique(union, return_index=True)
    positions = union[np.sort(first)]  # first occurrence, sources in the order above
    if vector is not None:
        scores = (model.item_vectors[positions] @ np.asarray(vector, np.float32)).astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        positions, scores = positions[order], scores[order]
    else:
        scores = np.full(len(positions), np.nan, np.float32)
    sources = np.full((len(positions), len(SOURCE)), np.nan, np.float32)
    by_position = np.argsort(positions, kind="stable")  # row of each candidate, looked up by position
    sorted_positions = positions[by_position]

    def rows(found: np.ndarray) -> np.ndarray:
        return by_position[np.searchsorted(sorted_positions, found)]

    for name, found in (("ann", ann), ("covisit", co_pos), ("popular", popular), ("sknn", kn_pos)):
        sources[rows(found), _COL[f"x_src_{name}_rank"]] = np.arange(len(found), dtype=np.float32)
    for name, found, score in (("covisit", co_pos, co_score), ("sknn", kn_pos, kn_score)):
        sources[rows(found), _COL[f"x_src_{name}_score"]] = score
    sources[:, _COL["x_src_count"]] = (~np.isnan(sources[:, RANK_COLUMNS])).sum(axis=1)
    return Candidates(positions, scores, sources)


def _ann(model: Model, vector: np.ndarray, exclude: np.ndarray, n: int, retriever: Retriever | None) -> np.ndarray:
    """The query's n nearest items not in ``exclude``; exact search without an index, or when
    the index cannot reach past everything excluded."""
    # Ask for as many extra neighbours as could be filtered out, so n remain.
    want = min(n + len(exclude), len(model.item_vectors))
    if retriever is not None:
        found = np.asarray(retriever.search(vector, want)[0], np.int64)
        kept = found[~np.isin(found, exclude)]
        if len(kept) >= n:
            return kept[:n]
        # A tree index answers at most its reorder budget: a user who consumed more than that
        # (a wholesaler with thousands of products) gets the exact neighbours instead.
    scores = model.item_vectors @ np.asarray(vector, np.float32)
    found = np.argsort(-scores, kind="stable")[:want]
    return found[~np.isin(found, exclude)][:n].astype(np.int64)


def _covisit(model: Model, recent: np.ndarray, exclude: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Items co-visited with the recent ones, each recent item weighted 1 / (its recency rank + 1)."""
    table = model.covisit
    if table is None or not len(recent) or n == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    parts, weights = [], []
    for j, p in enumerate(recent.tolist()):
        lo, hi = table.indptr[p], table.indptr[p + 1]
        parts.append(table.indices[lo:hi])
        weights.append(table.scores[lo:hi] / (j + 1))
    items, inverse = np.unique(np.concatenate(parts), return_inverse=True)
    total = np.bincount(inverse, weights=np.concatenate(weights)).astype(np.float32)
    keep = ~np.isin(items, exclude) & ~np.isin(items, recent)
    items, total = items[keep], total[keep]
    order = np.lexsort((items, -total))[:n]  # best first; ties by position, deterministic
    return items[order].astype(np.int64), total[order]


def _sknn(model: Model, recent: np.ndarray, exclude: np.ndarray, n: int, k: int,
          user_pos: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Session-kNN over users' histories: the ``k`` users sharing most of the recent items (each
    recent item weighted 1 / (its recency rank + 1), a user's overlap divided by the square root
    of their history length, so omnivores do not win by size) vote for their other items with
    their similarity. Best ``n`` items not in ``exclude`` or ``recent``, with their scores."""
    index = model.item_users
    if index is None or not len(recent) or n == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    parts, weights = [], []
    for j, p in enumerate(recent.tolist()):
        users = index.indices[index.indptr[p]:index.indptr[p + 1]]
        parts.append(users)
        weights.append(np.full(len(users), 1.0 / (j + 1), np.float32))
    users, inverse = np.unique(np.concatenate(parts), return_inverse=True)
    sim = np.bincount(inverse, weights=np.concatenate(weights)).astype(np.float32) / index.norm[users]
    if user_pos is not None:
        sim[users == user_pos] = 0  # not one's own neighbour
    top = np.lexsort((users, -sim))[:k]  # most similar first; ties by position, deterministic
    top = top[sim[top] > 0]
    if not len(top):
        return np.empty(0, np.int64), np.empty(0, np.float32)
    votes = [model.history[u] for u in users[top].tolist()]
    items, inverse = np.unique(np.concatenate(votes), return_inverse=True)
    score = np.bincount(inverse, weights=np.repeat(sim[top], [len(v) for v in votes])).astype(np.float32)
    keep = ~np.isin(items, exclude) & ~np.isin(items, recent)
    items, score = items[keep], score[keep]
    order = np.lexsort((items, -score))[:n]
    return items[order].astype(np.int64), score[order]


@dataclass(frozen=True)
class ItemUsers:
    """Item -> the users whose history holds it, as CSR over item positions (at most
    ``MAX_USERS_PER_ITEM`` per item: the first in the model's user order), and each user's norm
    (sqrt of their history length) for session-kNN. Built from the histories when a model loads."""

    indptr: np.ndarray
    indices: np.ndarray
    norm: np.ndarray

    @classmethod
    def from_histories(cls, n_items: int, history: list[np.ndarray]) -> ItemUsers:
        lengths = np.fromiter((len(h) for h in history), np.int64, len(history))
        items = np.concatenate(history) if len(history) else np.empty(0, np.int64)
        users = np.repeat(np.arange(len(history), dtype=np.int64), lengths)
        order = np.lexsort((users, items))
        items, users = items[order], users[order]
        counts = np.bincount(items, minlength=n_items)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        # Cap very popular items: their user lists say little and would cost every request.
        keep = (np.arange(len(items)) - starts[items]) < MAX_USERS_PER_ITEM if len(items) else np.empty(0, bool)
        items, users = items[keep], users[keep]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(items, minlength=n_items))])
        norm = np.sqrt(np.maximum(lengths, 1)).astype(np.float32)
        return cls(indptr.astype(np.int64), users, norm)


MAX_USERS_PER_ITEM = 1000
