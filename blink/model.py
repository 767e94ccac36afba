"""A published model version, loaded into aligned NumPy arrays for fast lookups.

Artifacts of one version (written by the batch jobs, read here by everything else)::

    var/artifacts/<version>/
        embeddings.npz           item_ids, item_vectors, user_ids, user_vectors   (embeddings job)
        features/<as_of>/        users.parquet, items.parquet, meta.json           (features job)
        scann/                   the retrieval index                               (index job)
        ranker.ubj               XGBoost ranker (UBJSON, never pickle)             (ranker job)
        manifest.json            written last by publish: the version is complete  (publish job)

``as_of`` names the point in time the user/item state describes: ``train`` (ranker
training), ``eval`` (offline evaluation) or ``serve`` (the newest state, what is published).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from blink import layout
from blink.candidates import CoVisitTable, Fusion, ItemUsers
from blink.feature_matrix import ITEM_FEATURES, USER_FEATURES
from blink.retrieval import Retriever
from blink.session import SessionEncoder


def per_category(column: pd.Series, n_categories: int) -> np.ndarray:
    """A per-user array column aligned with ``categories``, plus one NaN column for unknown ones."""
    out = np.full((len(column), n_categories + 1), np.nan, np.float32)
    if len(column) and n_categories:
        out[:, :n_categories] = np.stack([np.asarray(v, np.float64) for v in column]).astype(np.float32)
    return out


@dataclass
class Model:
    """Everything the recommend pipeline needs, indexed by integer positions."""

    version: str
    as_of_ms: int
    item_ids: np.ndarray
    item_vectors: np.ndarray
    item_features: np.ndarray
    item_category: np.ndarray  # index into categories; len(categories) = unknown
    categories: list[str]
    user_ids: list[str]
    user_vectors: np.ndarray  # NaN rows for users with nothing to embed
    user_features: np.ndarray
    user_category_share: np.ndarray  # one extra NaN column for unknown categories
    history: list[np.ndarray]  # item positions each user consumed before as_of
    trending: list[tuple[str, float]]
    retriever: Retriever | None = None
    booster: object | None = None
    # Hours since each user last touched each category (NaN: never), laid out like
    # user_category_share; None for a model built without it (features then NaN).
    user_category_hours: np.ndarray | None = None
    session: SessionEncoder | None = None  # the session GRU, when the version has one
    covisit: CoVisitTable | None = None  # the co-visitation candidate source
    recent: list[np.ndarray] = field(default_factory=list)  # per user: item positions, newest first
    fusion: Fusion = field(default_factory=Fusion.default)  # the candidate order without (or instead of) the ranker
    item_users: ItemUsers | None = None  # session-kNN's inverted index, built from ``history``
    item_index: dict[str, int] = field(default_factory=dict)
    user_index: dict[str, int] = field(default_factory=dict)
    trending_positions: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def __post_init__(self) -> None:
        self.item_index = {str(i): j for j, i in enumerate(self.item_ids)}
        self.user_index = {u: j for j, u in enumerate(self.user_ids)}
        if len(self.recent) != len(self.user_ids):  # a model built without recency: none known
            self.recent = [np.empty(0, np.int64)] * len(self.user_ids)
        self.trending_positions = np.asarray(
            [self.item_index[i] for i, _ in self.trending if i in self.item_index], np.int64)
        if self.item_users is None and len(self.history) == len(self.user_ids):
            self.item_users = ItemUsers.from_histories(len(self.item_ids), self.history)

    @classmethod
    def load(cls, directory: Path, as_of: str = "serve", *, retriever: bool = True,
             ranker: bool = True) -> Model:
        emb = np.load(directory / layout.EMBEDDINGS, allow_pickle=False)
        item_ids = emb["item_ids"].astype(str)
        item_vectors = emb["item_vectors"].astype(np.float32)
        item_index = {i: j for j, i in enumerate(item_ids)}
        fdir = layout.features_dir(directory, as_of)
        meta = json.loads((fdir / "meta.json").read_text())
        categories: list[str] = meta["categories"]
        cat_index = {c: j for j, c in enumerate(categories)}

        items = pd.read_parquet(fdir / "items.parquet").set_index("item_id").reindex(item_ids)
        item_features = items[[f.name for f in ITEM_FEATURES]].to_numpy(np.float32, na_value=np.nan)
        item_category = np.array([cat_index.get(c, len(categories)) for c in items["category"]], np.int64)

        users = pd.read_parquet(fdir / "users.parquet")
        # Users folded in at this cut-off when the embeddings task wrote them, else the train fit.
        folded = layout.user_vectors(directory, as_of)
        users_npz = np.load(folded, allow_pickle=False) if folded.exists() else emb
        als_users = {u: j for j, u in enumerate(users_npz["user_ids"].astype(str))}
        user_ids = list(users["user_id"])
        user_features = users[[f.name for f in USER_FEATURES]].to_numpy(np.float32, na_value=np.nan)
        share = per_category(users["category_share"], len(categories))
        hours = per_category(users["category_hours"], len(categories))
        history = [np.array([item_index[i] for i in h if i in item_index], np.int64)
                   for h in users["history"]]
        recent = ([np.array([item_index[i] for i in r if i in item_index], np.int64) for r in users["recent"]]
                  if "recent" in users.columns else [])
        # Read once: an npz file decompresses (and CRC-checks) an array again on every access.
        als_vectors = users_npz["user_vectors"]
        user_vectors = np.full((len(users), item_vectors.shape[1]), np.nan, np.float32)
        for pos, uid in enumerate(user_ids):
            if uid in als_users:
                user_vectors[pos] = als_vectors[als_users[uid]]
            elif len(history[pos]):
                # Fold-in: a user who arrived after the embeddings were fitted is the mean of
                # what they touched, which lives in the same vector space.
                user_vectors[pos] = item_vectors[history[pos]].mean(axis=0)

        booster = None
        if ranker and (directory / layout.RANKER).exists():
            import xgboost as xgb

            booster = xgb.Booster(model_file=str(directory / layout.RANKER))
            booster.set_param({"nthread": 1})  # one request = one thread; workers give parallelism
        return cls(
            version=directory.name, as_of_ms=int(meta["as_of_ms"]), item_ids=item_ids,
            item_vectors=item_vectors, item_features=item_features, item_category=item_category,
            categories=categories, user_ids=user_ids, user_vectors=user_vectors,
            user_features=user_features, user_category_share=share, user_category_hours=hours, history=history,
            trending=[(str(i), float(s)) for i, s in meta["trending"]],
            retriever=Retriever.load(directory) if retriever else None, booster=booster,
            session=SessionEncoder.load(directory) if (directory / layout.SESSION_WEIGHTS).exists() else None,
            covisit=_covisit(fdir / layout.COVISITATION, item_index), recent=recent,
            fusion=(Fusion.from_json(json.loads((directory / layout.FUSION).read_text()))
                    if (directory / layout.FUSION).exists() else Fusion.default()),
        )

    def consumed(self, user_id: str) -> list[str]:
        """Item ids the user consumed before as_of (empty for an unknown user)."""
        pos = self.user_index.get(user_id)
        return [] if pos is None else [str(self.item_ids[j]) for j in self.history[pos]]

    def item_vector(self, item_id: str) -> np.ndarray | None:
        pos = self.item_index.get(item_id)
        return None if pos is None else self.item_vectors[pos]


def _covisit(path: Path, item_index: dict[str, int]) -> CoVisitTable | None:
    """The co-visitation table of one cut-off, restricted to items the model knows."""
    if not path.exists():
        return None
    frame = pd.read_parquet(path)
    rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for item, nbrs, scores in zip(frame["item_id"], frame["neighbours"], frame["scores"], strict=True):
        if item not in item_index:
            continue
        keep = [(item_index[n], s) for n, s in zip(nbrs, scores, strict=True) if n in item_index]
        rows[item_index[item]] = (np.asarray([p for p, _ in keep], np.int64),
                                  np.asarray([s for _, s in keep], np.float32))
    return CoVisitTable.from_lists(len(item_index), rows)
