"""Stage one: approximate nearest-neighbour retrieval over item vectors with ScaNN.

Built by the batch ``index`` job, loaded in-process by every consumer (precompute, ranker
training, evaluation, serving). Small catalogues use ScaNN's exact brute-force scorer;
larger ones a partitioned tree with asymmetric hashing and exact re-ordering.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from blink import layout
from blink.config import RetrievalConfig
from blink.errors import ConfigError


class Retriever:
    """Top-N items by dot product for a query vector."""

    def __init__(self, searcher: object, n_items: int, params: dict[str, object]) -> None:
        self._searcher = searcher
        self.n_items = n_items
        self.params = params

    @staticmethod
    def build(vectors: np.ndarray, cfg: RetrievalConfig) -> Retriever:
        import scann  # heavy import, only where an index is built or loaded

        n = len(vectors)
        k = min(cfg.candidates, n)
        builder = scann.scann_ops_pybind.builder(vectors.astype(np.float32), k, "dot_product")
        if n < cfg.brute_force_below:
            params: dict[str, object] = {"kind": "brute_force"}
            searcher = builder.score_brute_force().build()
        else:
            leaves = cfg.num_leaves or max(2, int(math.sqrt(n)))
            search = cfg.leaves_to_search or max(1, leaves // 10)
            params = {"kind": "tree_ah", "leaves": leaves, "leaves_to_search": search, "reorder": cfg.reorder}
            searcher = (
                builder.tree(num_leaves=leaves, num_leaves_to_search=search,
                             training_sample_size=min(n, 250_000))
                .score_ah(2, anisotropic_quantization_threshold=0.2)
                .reorder(max(cfg.reorder, k))
                .build()
            )
        return Retriever(searcher, n, params)

    def save(self, directory: Path) -> None:
        path = directory / layout.INDEX_DIR
        path.mkdir(parents=True, exist_ok=True)
        self._searcher.serialize(str(path))  # type: ignore[attr-defined]
        (path / "blink.json").write_text(json.dumps({"n_items": self.n_items, "params": self.params}))

    @staticmethod
    def load(directory: Path) -> Retriever:
        import scann

        path = directory / layout.INDEX_DIR
        meta = json.loads((path / "blink.json").read_text())
        _relocate_assets(path)
        searcher = scann.scann_ops_pybind.load_searcher(str(path))
        return Retriever(searcher, meta["n_items"], meta["params"])

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Item positions and scores, best first."""
        n = min(n, self.n_items)
        idx, scores = self._searcher.search(query.astype(np.float32), final_num_neighbors=n)  # type: ignore[attr-defined]
        return idx.astype(np.int64), scores.astype(np.float32)

    @staticmethod
    def from_params(vectors: np.ndarray, candidates: int, params: dict[str, object]) -> Retriever:
        """An index with explicit settings (``params`` as in ``Retriever.params``), e.g. a tuned point.

        ``{"kind": "brute_force"}`` or ``{"kind": "tree_ah", "leaves": L, "leaves_to_search": S,
        "reorder": R}``, each optionally with ``"precision": "int8" | "bfloat16"`` (default
        float32): how the exact scores (brute force, or the tree's re-ordering) are computed. The
        index job picks all of them by measurement (jobs/index.py).
        """
        import scann
        from scann.scann_ops.py.scann_builder import ReorderType

        n = len(vectors)
        k = min(candidates, n)
        precision = str(params.get("precision", "float32"))
        quantize = {"float32": ReorderType.FLOAT32, "int8": ReorderType.INT8, "bfloat16": ReorderType.BFLOAT16}
        if precision not in quantize:
            raise ConfigError(f"unknown index precision {precision!r}; use one of {', '.join(quantize)}")
        extra = {} if precision == "float32" else {"precision": precision}
        builder = scann.scann_ops_pybind.builder(vectors.astype(np.float32), k, "dot_product")
        if params["kind"] == "brute_force":
            return Retriever(builder.score_brute_force(quantize=quantize[precision]).build(), n,
                             {"kind": "brute_force", **extra})
        leaves, search, reorder = (int(params[key]) for key in ("leaves", "leaves_to_search", "reorder"))  # type: ignore[call-overload]
        searcher = (
            builder.tree(num_leaves=leaves, num_leaves_to_search=min(search, leaves),
                         training_sample_size=min(n, 250_000))
            .score_ah(2, anisotropic_quantization_threshold=0.2)
            .reorder(max(reorder, k), quantize=quantize[precision])
            .build()
        )
        return Retriever(searcher, n, {"kind": "tree_ah", "leaves": leaves, "leaves_to_search": search,
                                       "reorder": reorder, **extra})

    def save_with_defaults(self, directory: Path, leaves_to_search: int, reorder: int) -> Retriever:
        """Save this tree index with other search-time defaults, and load it back.

        The trained partitions and codebook are kept (ScaNN's training is not deterministic,
        so a rebuilt tree would not be the one tuning measured); only the number of leaves
        searched and the re-order size are rewritten in the serialized config.
        """
        from scann.proto import scann_pb2

        if self.params["kind"] != "tree_ah":
            raise ConfigError(f"only a tree index has search defaults to set, not {self.params['kind']}")
        self.save(directory)
        path = directory / layout.INDEX_DIR / "scann_config.pb"
        config = scann_pb2.ScannConfig()
        config.ParseFromString(path.read_bytes())
        config.partitioning.query_spilling.max_spill_centers = leaves_to_search
        config.exact_reordering.approx_num_neighbors = max(reorder, config.num_neighbors)
        path.write_bytes(config.SerializeToString())
        params = {**self.params, "leaves_to_search": leaves_to_search, "reorder": reorder}
        meta = {"n_items": self.n_items, "params": params}
        (directory / layout.INDEX_DIR / "blink.json").write_text(json.dumps(meta))
        return Retriever.load(directory)

    def search_with(self, query: np.ndarray, n: int, leaves_to_search: int = -1,
                    reorder: int = -1) -> np.ndarray:
        """Item positions for ``query`` with search-time overrides (-1 = as built); for tuning.

        A tree index answers at most ``min(n, reorder, items in the searched leaves)`` items.
        """
        idx, _ = self._searcher.search(  # type: ignore[attr-defined]
            query.astype(np.float32), final_num_neighbors=min(n, self.n_items),
            pre_reorder_num_neighbors=reorder, leaves_to_search=leaves_to_search)
        return np.asarray(idx, dtype=np.int64)


def exact_scores(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 64) -> np.ndarray:
    """The k-th best exact dot product per query (float64 numpy, the ground truth for recall)."""
    k = min(k, len(vectors))
    items = vectors.astype(np.float64)
    out = np.empty(len(queries), np.float64)
    for start in range(0, len(queries), chunk):
        scores = queries[start:start + chunk].astype(np.float64) @ items.T
        out[start:start + chunk] = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    return out


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k item positions per query, best first (brute-force numpy)."""
    k = min(k, len(vectors))
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def recall_vs_exact(vectors: np.ndarray, queries: np.ndarray, found: list[np.ndarray], k: int,
                    kth: np.ndarray | None = None) -> float:
    """Mean recall@k of ``found`` (positions per query) against exact dot-product search.

    An item counts when its exact score reaches the exact k-th best score, so ties at the
    boundary (equal vectors) are not punished; a short answer counts its missing slots as misses.
    """
    k = min(k, len(vectors))
    kth = exact_scores(vectors, queries, k) if kth is None else kth
    items = vectors.astype(np.float64)
    hits = []
    for q, pos, bound in zip(queries.astype(np.float64), found, kth, strict=True):
        top = np.asarray(pos[:k], dtype=np.int64)
        scores = items[top] @ q
        hits.append(np.count_nonzero(scores >= bound - 1e-6 * (1.0 + abs(bound))) / k)
    return float(np.mean(hits)) if hits else 1.0


def _relocate_assets(path: Path) -> None:
    """ScaNN records absolute asset paths when it serializes; an artifact copied to another
    host or directory must point at its own files, so rewrite them (atomically, only if needed)."""
    assets = path / "scann_assets.pbtxt"
    if not assets.exists():
        return
    text = assets.read_text()
    fixed = re.sub(r'asset_path: "([^"]*)"', lambda m: f'asset_path: "{path / Path(m.group(1)).name}"', text)
    if fixed != text:
        tmp = assets.with_name(f".{assets.name}.{os.getpid()}.tmp")
        tmp.write_text(fixed)
        os.replace(tmp, assets)
