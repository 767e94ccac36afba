"""The recommend pipeline: retrieval -> features -> ranking -> filtering.

This is the one code path behind every personalised list: the serving tail path calls it
per request, and the batch precompute job calls it per head user, so a head user's cached
list is exactly what the tail path would have answered at the same model version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from blink.features import Context, feature_matrix
from blink.model import Model

Scored = list[tuple[str, float]]


@dataclass(frozen=True)
class Candidates:
    positions: np.ndarray
    scores: np.ndarray


class Pipeline:
    """Two-stage recommender over one loaded :class:`Model`."""

    def __init__(self, model: Model, candidates: int = 500) -> None:
        self.model = model
        self.candidates = candidates

    def user_position(self, user_id: str) -> int | None:
        """Position of a user we can personalise for (has a vector), else None."""
        pos = self.model.user_index.get(user_id)
        if pos is None or np.isnan(self.model.user_vectors[pos, 0]):
            return None
        return pos

    def retrieve(self, user_pos: int | None, exclude: Iterable[int] = (),
                 query: np.ndarray | None = None) -> Candidates:
        """ScaNN top-N for the query (default: the user's vector), minus what was consumed."""
        assert self.model.retriever is not None, "model loaded without a retriever"
        history = self.model.history[user_pos] if user_pos is not None else np.empty(0, np.int64)
        seen = np.union1d(history, np.fromiter(exclude, np.int64))
        if query is None:
            assert user_pos is not None, "retrieval needs a user or a query vector"
            query = self.model.user_vectors[user_pos]
        # Ask for enough extra neighbours that filtering consumed items still leaves N.
        want = self.candidates + min(len(seen), self.candidates)
        pos, scores = self.model.retriever.search(query, want)
        keep = ~np.isin(pos, seen)
        return Candidates(pos[keep][: self.candidates], scores[keep][: self.candidates])

    def rank(self, user_pos: int | None, cands: Candidates, ctx: Context,
             session: np.ndarray | None = None) -> np.ndarray:
        """Ranker scores for the candidates; retrieval scores if no ranker is published."""
        if self.model.booster is None or len(cands.positions) == 0:
            return cands.scores
        x = feature_matrix(self.model, user_pos, cands.positions, cands.scores, ctx, session_vector=session)
        return np.asarray(self.model.booster.inplace_predict(x), dtype=np.float32)  # type: ignore[attr-defined]

    def recommend(self, user_id: str, k: int, ctx: Context, exclude: Iterable[str] = (),
                  rank: bool = True, after_stage: Callable[[str], None] | None = None,
                  session: np.ndarray | None = None, blend: float = 0.0) -> Scored | None:
        """Top-k (item_id, score), best first; None when there is nothing to personalise from.

        ``session`` is the session's query vector: alone for a new or anonymous user, blended
        with weight ``blend`` into a known user's long-term vector otherwise. ``after_stage`` is
        called after retrieval and after ranking; serving uses it to time stages and to stop
        at its deadline (by raising).
        """
        user_pos = self.user_position(user_id)
        if user_pos is None and session is None:
            return None
        query = None
        if session is not None:
            query = session if user_pos is None else (
                (1 - blend) * self.model.user_vectors[user_pos] + blend * session)
        after = after_stage or (lambda stage: None)
        extra = [self.model.item_index[i] for i in exclude if i in self.model.item_index]
        cands = self.retrieve(user_pos, extra, query)
        after("retrieval")
        scores = self.rank(user_pos, cands, ctx, session) if rank else cands.scores
        after("ranking")
        # Stable sort: ties keep retrieval order, so the top k of a longer list is the
        # same as the list asked for with k (head lists are stored longer than k).
        order = np.argsort(-scores, kind="stable")[:k]
        ids = self.model.item_ids
        return [(str(ids[cands.positions[j]]), float(scores[j])) for j in order]

    def similar(self, item_id: str, k: int) -> Scored | None:
        """Nearest items to an item in the shared vector space (itself excluded)."""
        pos = self.model.item_index.get(item_id)
        if pos is None:
            return None
        assert self.model.retriever is not None
        found, scores = self.model.retriever.search(self.model.item_vectors[pos], k + 1)
        return [(str(self.model.item_ids[j]), float(s)) for j, s in zip(found, scores, strict=True) if j != pos][:k]

    def trending(self, k: int, exclude: Iterable[str] = ()) -> Scored:
        skip = set(exclude)
        return [(i, s) for i, s in self.model.trending if i not in skip][:k]
