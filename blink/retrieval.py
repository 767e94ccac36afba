"""Stage one: approximate nearest-neighbour retrieval over item vectors with ScaNN.

Built by the batch ``index`` job, loaded in-process by every consumer (precompute, ranker
training, evaluation, serving). Small catalogues use ScaNN's exact brute-force scorer;
larger ones a partitioned tree with asymmetric hashing and exact re-ordering.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from blink.config import RetrievalConfig

INDEX_DIR = "scann"


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
        path = directory / INDEX_DIR
        path.mkdir(parents=True, exist_ok=True)
        self._searcher.serialize(str(path))  # type: ignore[attr-defined]
        (path / "blink.json").write_text(json.dumps({"n_items": self.n_items, "params": self.params}))

    @staticmethod
    def load(directory: Path) -> Retriever:
        import scann

        path = directory / INDEX_DIR
        meta = json.loads((path / "blink.json").read_text())
        searcher = scann.scann_ops_pybind.load_searcher(str(path))
        return Retriever(searcher, meta["n_items"], meta["params"])

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Item positions and scores, best first."""
        n = min(n, self.n_items)
        idx, scores = self._searcher.search(query.astype(np.float32), final_num_neighbors=n)  # type: ignore[attr-defined]
        return idx.astype(np.int64), scores.astype(np.float32)
