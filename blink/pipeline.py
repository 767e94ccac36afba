"""The recommend pipeline: multi-source candidates -> features -> ranking -> filtering.

This is the one code path behind every personalised list: the serving tail and session
paths call it per request, the batch precompute job per head user, evaluation per test user
and ranker training per training group — so a head user's cached list is exactly what the
tail path would have answered at the same model version, and the ranker learns on the very
candidates it will rank.

Candidates are the union of several sources (blink/candidates.py): the vector neighbours of
the query (ANN), items co-visited with the user's or session's recent items, and trending
items. Each candidate keeps its rank and score in every source as ranker features, so the
ranker decides when popularity or co-visitation should win over the vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from blink.candidates import Candidates, SourceSizes, gather
from blink.errors import SetupError
from blink.feature_matrix import NAMES, Context, feature_matrix
from blink.model import Model
from blink.retrieval import Retriever
from blink.session_store import SessionState

Scored = list[tuple[str, float]]
RECENT = 5  # recent items that seed co-visitation: the last few say most about what comes next


@dataclass(frozen=True)
class Query:
    """Everything one request personalises from, in item positions."""

    user_pos: int | None  # a user with a vector, or None (anonymous / new)
    vector: np.ndarray | None  # the ANN query: user vector, session vector or their blend
    recent: np.ndarray  # item positions, most recent first (session items, then the user's)
    exclude: np.ndarray  # item positions never to recommend (consumed)
    session: np.ndarray | None = None  # the session vector, for the session features
    session_items: np.ndarray | None = None  # positions the live session touched, in time order


class Pipeline:
    """Two-stage recommender over one loaded :class:`Model`."""

    def __init__(self, model: Model, candidates: int = 500, sizes: SourceSizes | None = None) -> None:
        self.model = model
        self.sizes = sizes or SourceSizes(ann=candidates)

    @property
    def candidates(self) -> int:
        return self.sizes.ann

    def user_position(self, user_id: str) -> int | None:
        """Position of a user we can personalise for (has a vector), else None."""
        pos = self.model.user_index.get(user_id)
        if pos is None or np.isnan(self.model.user_vectors[pos, 0]):
            return None
        return pos

    def query(self, user_id: str | None, exclude: Iterable[str] = (), session: np.ndarray | None = None,
              session_items: Sequence[str] = (), blend: float = 0.0) -> Query | None:
        """The request's query; None when there is nothing to personalise from.

        ``session`` is the session's vector: alone for a new or anonymous user, blended with
        weight ``blend`` into a known user's long-term vector otherwise. ``session_items`` are
        the session's items in time order; with the user's history they are excluded and seed
        co-visitation.
        """
        m = self.model
        user_pos = self.user_position(user_id) if user_id is not None else None
        known = m.user_index.get(user_id) if user_id is not None else None
        session_pos = [m.item_index[i] for i in session_items if i in m.item_index]
        user_recent = m.recent[known] if known is not None else np.empty(0, np.int64)
        recent = _dedupe(np.concatenate([np.asarray(session_pos[::-1], np.int64), user_recent]))[:RECENT]
        if user_pos is None and session is None and not len(recent):
            return None
        vector: np.ndarray | None = None
        if session is not None:
            vector = session if user_pos is None else (1 - blend) * m.user_vectors[user_pos] + blend * session
        elif user_pos is not None:
            vector = m.user_vectors[user_pos]
        history = m.history[known] if known is not None else np.empty(0, np.int64)
        extra = [m.item_index[i] for i in exclude if i in m.item_index]
        seen = np.union1d(history, np.asarray([*extra, *session_pos], np.int64))
        return Query(user_pos, vector, recent, seen, session, np.asarray(session_pos, np.int64))

    def session_vector(self, state: SessionState | None) -> np.ndarray | None:
        """A live session's query vector; None when the session cannot personalise (no state, no
        session model, a state from another model version, or no known item yet)."""
        encoder = self.model.session
        if state is None or encoder is None or state.n == 0 or state.version != encoder.version:
            return None
        last = next((v for v in map(self.model.item_vector, reversed(state.items)) if v is not None), None)
        return encoder.vector(state.h, last if last is not None else np.zeros(self.model.item_vectors.shape[1],
                                                                              np.float32))

    def candidates_for(self, q: Query) -> Candidates:
        """The union of every source's candidates for ``q`` (consumed items removed)."""
        return gather(self.model, q.vector, q.recent, q.exclude, self.sizes, self._retriever_or_none(), q.user_pos)

    def features(self, q: Query, cands: Candidates, ctx: Context, out: np.ndarray | None = None) -> np.ndarray:
        return feature_matrix(self.model, q.user_pos, cands.positions, cands.scores, ctx,
                              session_vector=q.session, sources=cands.sources, session_items=q.session_items,
                              out=out)

    def rank(self, q: Query, cands: Candidates, ctx: Context) -> np.ndarray:
        """Ranker scores for the candidates, or their fused source order where the version has
        no ranker or its ranker did not beat that order for this kind of request."""
        return self.rank_many([q], [cands], ctx)[0]

    def rank_many(self, queries: Sequence[Query], cands: Sequence[Candidates], ctx: Context) -> list[np.ndarray]:
        """:meth:`rank` for many requests: their feature matrices stacked into one XGBoost call.

        A tree ensemble scores each row on its own, so a row's score does not depend on which
        rows share the call (tested): one user alone and one of a thousand get the same scores.
        """
        out: list[np.ndarray] = [np.empty(0, np.float32)] * len(queries)
        ranked = []
        for j, (q, c) in enumerate(zip(queries, cands, strict=True)):
            kind = request_kind(q)
            if self.model.booster is None or not self.model.fusion.ranker[kind] or len(c.positions) == 0:
                out[j] = c.fused_scores(self.model.fusion.weights[kind])
            else:
                ranked.append(j)
        if ranked:
            rows = [len(cands[j].positions) for j in ranked]
            ends = np.cumsum(rows).tolist()
            x = np.empty((ends[-1], len(NAMES)), np.float32)
            for j, end, n in zip(ranked, ends, rows, strict=True):
                self.features(queries[j], cands[j], ctx, out=x[end - n:end])
            scores = np.asarray(self.model.booster.inplace_predict(x), dtype=np.float32)  # type: ignore[attr-defined]
            for j, end, n in zip(ranked, ends, rows, strict=True):
                out[j] = scores[end - n:end]
        return out

    def recommend(self, user_id: str | None, k: int, ctx: Context, exclude: Iterable[str] = (),
                  rank: bool = True, after_stage: Callable[[str], None] | None = None,
                  session: np.ndarray | None = None, blend: float = 0.0,
                  session_items: Sequence[str] = ()) -> Scored | None:
        """Top-k (item_id, score), best first; None when there is nothing to personalise from.

        ``rank=False`` gives the retrieval-only answer (the query's vector neighbours), the
        baseline the ranker must beat. ``after_stage`` is called after retrieval and after
        ranking; serving uses it to time stages and to stop at its deadline (by raising).
        """
        q = self.query(user_id, exclude, session, session_items, blend)
        if q is None:
            return None
        after = after_stage or (lambda stage: None)
        cands = self.candidates_for(q)
        after("retrieval")
        if rank:
            scores = self.rank(q, cands, ctx)
        else:
            cands = cands.only("ann")
            scores = cands.scores
        after("ranking")
        return self._top(cands, scores, k)

    def recommend_many(self, user_ids: Sequence[str], k: int, ctx: Context) -> list[Scored | None]:
        """:meth:`recommend` (ranked, no session, nothing extra excluded) for many users at once,
        one answer per user in order: each user's candidates as for one request, then one ranker
        call for all of them (:meth:`rank_many`). Precompute runs head users through this."""
        queries = [self.query(u) for u in user_ids]
        live = [q for q in queries if q is not None]
        cands = [self.candidates_for(q) for q in live]
        answers = iter([self._top(c, s, k) for c, s in zip(cands, self.rank_many(live, cands, ctx), strict=True)])
        return [None if q is None else next(answers) for q in queries]

    def _top(self, cands: Candidates, scores: np.ndarray, k: int) -> Scored:
        # Stable sort: ties keep candidate order, so the top k of a longer list is the
        # same as the list asked for with k (head lists are stored longer than k).
        order = np.argsort(-scores, kind="stable")[:k]
        items = self.model.item_ids[cands.positions[order]].tolist()
        return list(zip(map(str, items), scores[order].tolist(), strict=True))

    def similar(self, item_id: str, k: int) -> Scored | None:
        """Nearest items to an item in the shared vector space (itself excluded)."""
        pos = self.model.item_index.get(item_id)
        if pos is None:
            return None
        found, scores = self._retriever().search(self.model.item_vectors[pos], k + 1)
        return [(str(self.model.item_ids[j]), float(s)) for j, s in zip(found, scores, strict=True) if j != pos][:k]

    def trending(self, k: int, exclude: Iterable[str] = ()) -> Scored:
        skip = set(exclude)
        return [(i, s) for i, s in self.model.trending if i not in skip][:k]

    def _retriever_or_none(self) -> Retriever | None:
        return self.model.retriever

    def _retriever(self) -> Retriever:
        if self.model.retriever is None:
            raise SetupError("this model was loaded without its retrieval index (Model.load(retriever=True))")
        return self.model.retriever


def request_kind(q: Query) -> str:
    """``user`` for a known user's vector, ``session`` for a session or history-only request."""
    return "user" if q.user_pos is not None else "session"


def _dedupe(positions: np.ndarray) -> np.ndarray:
    """First occurrence of each position, order kept."""
    _, first = np.unique(positions, return_index=True)
    return positions[np.sort(first)]
