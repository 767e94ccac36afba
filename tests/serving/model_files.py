"""Write a small but real model version to disk, in the layout ``Model.load`` reads, without
Spark: the router tests' small model (60 items, users u0..u2) as a published version directory.
Used by the registry and gunicorn fault tests (a corrupt artifact, Redis down at start)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from blink import layout
from blink.config import RetrievalConfig
from blink.feature_matrix import ITEM_FEATURES, USER_FEATURES
from blink.retrieval import Retriever
from tests.serving.test_router import small_model


def write_version(artifacts: Path, version: str, published_at_ms: int, checksums: bool = False) -> Path:
    """``artifacts/<version>/`` with embeddings, serve-time features, the ScaNN index and, last,
    the manifest (with a sha256 per file when ``checksums``). Returns the directory."""
    model = small_model()
    d = artifacts / version
    fdir = layout.features_dir(d, "serve")
    fdir.mkdir(parents=True)
    np.savez(d / layout.EMBEDDINGS, item_ids=model.item_ids, item_vectors=model.item_vectors,
             user_ids=np.array(model.user_ids), user_vectors=model.user_vectors)
    (fdir / "meta.json").write_text(json.dumps({"categories": model.categories, "as_of_ms": model.as_of_ms,
                                                "trending": model.trending}))
    items = pd.DataFrame({"item_id": model.item_ids, "category": ["c0"] * len(model.item_ids)})
    for j, f in enumerate(ITEM_FEATURES):
        items[f.name] = model.item_features[:, j]
    items.to_parquet(fdir / "items.parquet")
    users = pd.DataFrame({"user_id": model.user_ids})
    for j, f in enumerate(USER_FEATURES):
        users[f.name] = model.user_features[:, j]
    users["category_share"] = [[0.5]] * len(model.user_ids)
    users["category_hours"] = [[0.5]] * len(model.user_ids)
    users["history"] = [[str(model.item_ids[p]) for p in h] for h in model.history]
    users.to_parquet(fdir / "users.parquet")
    Retriever.build(model.item_vectors, RetrievalConfig(candidates=30)).save(d)
    manifest: dict[str, object] = {"version": version, "as_of_ms": model.as_of_ms, "published_at_ms": published_at_ms}
    if checksums:
        manifest["checksums"] = {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
                                 for p in sorted(d.rglob("*")) if p.is_file()}
    (d / layout.MANIFEST).write_text(json.dumps(manifest))
    return d
