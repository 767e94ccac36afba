"""Candidate sources and their union: the first stage of the recommend pipeline.

Three sources, each strong where the others are weak:

- ``ann``: the query vector's nearest items (ScaNN) — long-term taste, or the session's drift;
- ``covisit``: items that followed the user's or session's most recent items in other
  people's sequences — what comes next, even for items too new or rare for good vectors;
- ``popular``: trending at the cut-off — what a newcomer, or anyone, is likely to take.

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

SOURCES = ("ann", "covisit", "popular")
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
        return cls({k: tuple(float(x) for x in v) for k, v in data["weights"].items()},
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

    @classmethod
    def from_config(cls, cfg: Config, ann: int | None = None) -> SourceSizes:
        """The configured sizes; ``ann`` overrides retrieval.candidates (ranker training uses fewer)."""
        c = cfg.candidates
        return cls(ann if ann is not None else cfg.retrieval.candidates, c.covisit_candidates, c.popular_candidates)


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
           sizes: SourceSizes, retriever: Retriever | None) -> Candidates:
    """Every source's candidates for one request, minus ``exclude``; see the module doc."""
    ann = _ann(model, vector, exclude, sizes.ann, retriever) if vector is not None else np.empty(0, np.int64)
    co_pos, co_score = _covisit(model, recent, exclude, sizes.covisit)
    popular = model.trending_positions[~np.isin(model.trending_positions, exclude)][: sizes.popular]
    union = np.concatenate([ann, co_pos, popular])
    _, first = np.unique(union, return_index=True)
    positions = union[np.sort(first)]  # first occurrence, sources in the order above
    if vector is not None:
        scores = (model.item_vectors[positions] @ np.asarray(vector, np.float32)).astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        positions, scores = positions[order], scores[order]
    else:
        scores = np.full(len(positions), np.nan, np.float32)
    sources = np.full((len(positions), len(SOURCE)), np.nan, np.float32)
    where = {p: j for j, p in enumerate(positions.tolist())}
    for name, found in (("ann", ann), ("covisit", co_pos), ("popular", popular)):
        rows = np.fromiter((where[p] for p in found.tolist()), np.int64, len(found))
        sources[rows, _COL[f"x_src_{name}_rank"]] = np.arange(len(found), dtype=np.float32)
    rows = np.fromiter((where[p] for p in co_pos.tolist()), np.int64, len(co_pos))
    sources[rows, _COL["x_src_covisit_score"]] = co_score
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
