"""Retrieval: brute force is exact, and the index job's tuning keeps the recall it promises.

Synthetic clustered vectors stand in for ALS item vectors: the exact answer is computed
with numpy, so every claim (recall of the chosen point, recall of the saved index) is checked
against ground truth rather than against ScaNN's own numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blink import config, layout
from blink.config import RetrievalConfig
from blink.retrieval import Retriever, exact_top_k, recall_vs_exact
from jobs import index
from jobs.interval import Interval

TARGET = 0.95


def clustered(n: int, dim: int = 32, clusters: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Item vectors around cluster centres, and 300 query vectors from the same mixture."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))

    def draw(m: int) -> np.ndarray:
        return (centres[rng.integers(0, clusters, m)] + 0.5 * rng.normal(size=(m, dim))).astype(np.float32)

    return draw(n), draw(300)


def true_recall(retriever: Retriever, vectors: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Recall@k of the served search path, by plain set overlap with numpy's exact top-k."""
    exact = exact_top_k(vectors, queries, k)
    hits = [len(set(retriever.search(q, k)[0]) & set(e)) / k for q, e in zip(queries, exact, strict=True)]
    return float(np.mean(hits))


def test_brute_force_returns_the_exact_top_k() -> None:
    vectors, queries = clustered(800)
    retriever = Retriever.build(vectors, RetrievalConfig())  # 800 < brute_force_below
    assert retriever.params == {"kind": "brute_force"}
    exact = exact_top_k(vectors, queries[:50], 100)
    for q, want in zip(queries[:50], exact, strict=True):
        got, scores = retriever.search(q, 100)
        assert set(got) == set(want)
        np.testing.assert_allclose(scores, vectors[got] @ q, rtol=1e-4, atol=1e-4)
        assert np.all(np.diff(scores) <= 1e-5), "best first"


def test_exact_top_k_orders_best_first() -> None:
    vectors, queries = clustered(300)
    top = exact_top_k(vectors, queries[:5], 10)
    for q, row in zip(queries[:5], top, strict=True):
        scores = vectors.astype(np.float64) @ q
        assert list(row) == list(np.argsort(-scores)[:10])


def test_recall_counts_ties_at_the_boundary_and_short_answers_as_misses() -> None:
    vectors = np.array([[1.0, 0], [1.0, 0], [1.0, 0], [0.5, 0], [0.1, 0]], np.float32)
    query = np.array([[1.0, 0]], np.float32)
    # Any two of the three equal best items are an exact top-2.
    assert recall_vs_exact(vectors, query, [np.array([2, 1])], 2) == 1.0
    assert recall_vs_exact(vectors, query, [np.array([0, 3])], 2) == 0.5
    assert recall_vs_exact(vectors, query, [np.array([0])], 2) == 0.5


def test_tuning_on_a_tree_sized_catalogue_keeps_its_recall(tmp_path: Path) -> None:
    vectors, queries = clustered(5000)
    cfg = RetrievalConfig()
    assert len(vectors) >= cfg.brute_force_below, "the tree path is what this test is about"
    retriever, tuning = index.build_index(vectors, queries, cfg, tmp_path, allow_brute_force=False)

    chosen = tuning["chosen"]
    assert chosen["kind"] == "tree_ah" and retriever.params["kind"] == "tree_ah"
    assert chosen["recall"] >= TARGET and chosen["verified_recall"] >= TARGET
    kinds = [p["kind"] for p in tuning["grid"]]
    assert kinds[0] == "brute_force" and tuning["grid"][0]["recall"] == 1.0
    assert kinds.count("tree_ah") >= 9, "a grid of leaves x re-order sizes"
    # The cheapest qualifying setting: no qualifying point with the same re-order searches fewer leaves.
    assert not any(p["kind"] == "tree_ah" and p["reorder"] == chosen["reorder"] and p["recall"] >= TARGET
                   and p["leaves_to_search"] < chosen["leaves_to_search"] for p in tuning["grid"])
    # The saved index, loaded as serving loads it, gives the recall measured during tuning ...
    loaded = Retriever.load(tmp_path)
    assert loaded.params == retriever.params
    assert loaded.params["leaves_to_search"] == chosen["leaves_to_search"]
    k = tuning["k"]
    assert true_recall(loaded, vectors, queries, k) == pytest.approx(chosen["recall"], abs=1e-4)  # rounded to 5 places
    # ... and about the same on queries it was not tuned on.
    _, held_out = clustered(10, seed=0)  # same seed: same centres as the items, new draws
    assert true_recall(loaded, vectors, held_out, k) >= TARGET - 0.03
    # The pipeline over-fetches up to 2x candidates to filter consumed items: the index must answer them.
    assert len(loaded.search(queries[0], 2 * k)[0]) == 2 * k


def test_small_catalogue_is_exact_and_still_measured(tmp_path: Path) -> None:
    vectors, queries = clustered(600)
    retriever, tuning = index.build_index(vectors, queries, RetrievalConfig(), tmp_path)
    assert retriever.params == {"kind": "brute_force"}
    assert len(tuning["grid"]) == 1
    assert tuning["chosen"]["recall"] == 1.0 and tuning["chosen"]["verified_recall"] == 1.0
    assert tuning["chosen"]["p99_ms"] > 0


def test_queries_are_users_when_there_are_some_else_items() -> None:
    items = np.ones((50, 4), np.float32)
    users = np.full((40, 4), 2.0, np.float32)
    users[::2] = np.nan  # users without a vector (no ALS factors) are skipped
    queries, source = index.sample_queries(users, items, 300)
    assert source == "user_vectors" and len(queries) == 20 and not np.isnan(queries).any()
    queries, source = index.sample_queries(np.empty((0, 4), np.float32), items, 30)
    assert source == "item_vectors" and len(queries) == 30


def test_index_job_writes_the_index_and_the_tuning_file(tmp_path: Path) -> None:
    cfg = config.load("test", {"BLINK_PATHS__VAR_DIR": str(tmp_path / "var")})
    run = Interval(cfg, "manual__test", 1_795_471_200_000)
    vectors, users = clustered(2500, dim=16)
    np.savez(run.artifact_dir / "embeddings.npz", item_ids=np.arange(len(vectors)).astype(str),
             item_vectors=vectors, user_ids=np.arange(len(users)).astype(str), user_vectors=users)
    summary = index.run(cfg, run)
    tuning = json.loads((run.artifact_dir / layout.RETRIEVAL_TUNING).read_text())
    assert tuning["query_source"] == "user_vectors" and tuning["items"] == 2500
    assert summary["recall"] == tuning["chosen"]["recall"] >= tuning["target_recall"]
    assert Retriever.load(run.artifact_dir).params["kind"] == summary["kind"]


def test_an_index_copied_elsewhere_still_loads(tmp_path: Path) -> None:
    """Artifacts move between hosts: ScaNN's absolute asset paths must not pin them."""
    import shutil

    from blink.config import RetrievalConfig
    from blink.retrieval import Retriever

    vectors = np.random.default_rng(1).normal(size=(3000, 8)).astype(np.float32)
    built = Retriever.build(vectors, RetrievalConfig(brute_force_below=100, candidates=20, tune=False))
    built.save(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    found, _ = Retriever.load(tmp_path / "b").search(vectors[0], 5)
    assert len(found) == 5


@pytest.mark.parametrize("kind", ["brute_force", "tree_ah"])
def test_a_quantized_index_is_published_only_within_the_loss_bound(tmp_path: Path, kind: str) -> None:
    vectors, queries = clustered(2500, dim=16)
    cfg = RetrievalConfig(candidates=100, max_quantization_loss=0.005)
    params: dict[str, object] = ({"kind": "brute_force"} if kind == "brute_force" else
                                 {"kind": "tree_ah", "leaves": 50, "leaves_to_search": 25, "reorder": 400})
    base = Retriever.from_params(vectors, cfg.candidates, params)
    base.save(tmp_path)
    served, report = index.choose_precision(Retriever.load(tmp_path), vectors, queries, cfg, tmp_path)
    rows = {r["precision"]: r for r in report["variants"]}
    assert set(rows) == {"float32", "int8", "bfloat16"} and rows["int8"]["bytes"] < rows["float32"]["bytes"]
    for name in ("int8", "bfloat16"):
        assert rows[name]["within_bound"] == (rows[name]["relative_loss"] <= 0.005)
    passing = [p for p in index.PRECISIONS if rows[p]["within_bound"]]
    assert report["published"] == (passing[0] if passing else "float32")
    loaded = Retriever.load(tmp_path)  # what serving will load is what was chosen
    assert loaded.params.get("precision", "float32") == report["published"]
    # Against numpy's exact answer, not ScaNN's numbers: the published index keeps its recall.
    assert true_recall(loaded, vectors, queries, 20) >= true_recall(base, vectors, queries, 20) * (1 - 0.005) - 0.01
