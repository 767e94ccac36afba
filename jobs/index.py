"""Index: build the ScaNN retrieval index over the item vectors of this version, tuned by measurement.

Above ``retrieval.brute_force_below`` items the ScaNN settings are chosen on the version's
real vectors: for a small grid (share of leaves searched x re-order size) recall@candidates
is measured against exact numpy search, with per-query latency, over sampled user vectors.
For each re-order size the fewest leaves reaching ``retrieval.target_recall`` make the short
list; of those and brute force, the lowest measured p50 wins (brute force when within 10 %). The measured tree itself is
saved with the chosen search settings (ScaNN's training is not deterministic, so a rebuilt
tree would not be the one measured) and measured once more as served. Everything lands in
``retrieval_tuning.json`` for the evaluation report's recall-vs-latency curve.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from blink import layout
from blink.config import Config, RetrievalConfig
from blink.retrieval import Retriever, exact_scores, recall_vs_exact
from jobs.interval import Interval

log = logging.getLogger(__name__)
# Share of the tree's leaves searched, and re-order sizes as multiples of the candidate count.
# Re-order starts at 2x: the pipeline over-fetches up to 2x candidates to survive filtering
# consumed items, and a tree index answers at most `reorder` items.
LEAF_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
REORDER_MULTIPLES = (2, 4, 8)
WARMUP_QUERIES = 20
# Brute force wins when within this share of the fastest qualifying tree's p50: exact answers
# are worth a saving that small, which is also about the noise of latency on a shared machine.
EXACT_PREFERENCE = 0.10


def run(cfg: Config, interval: Interval) -> dict[str, object]:
    emb = np.load(interval.artifact_dir / layout.EMBEDDINGS)
    vectors = emb["item_vectors"].astype(np.float32)
    n_queries = cfg.retrieval.tune_queries
    queries, source = sample_queries(emb["user_vectors"], vectors, n_queries)
    retriever, tuning = build_index(vectors, queries, cfg.retrieval, interval.artifact_dir)
    if cfg.retrieval.quantize:
        retriever, tuning["precision"] = choose_precision(retriever, vectors, queries, cfg.retrieval,
                                                          interval.artifact_dir)
    tuning["query_source"] = source
    (interval.artifact_dir / layout.RETRIEVAL_TUNING).write_text(json.dumps(tuning, indent=1))
    chosen = tuning["chosen"]
    log.info("index: %d items, %s, recall@%d %.4f, p50 %.3f ms, p99 %.3f ms", len(vectors), retriever.params,
             tuning["k"], chosen["recall"], chosen["p50_ms"], chosen["p99_ms"])
    return {"items": len(vectors), **retriever.params, "recall": chosen["recall"], "p99_ms": chosen["p99_ms"]}


PRECISIONS = ("int8", "bfloat16")  # smallest first: the first within the loss bound is published
SHORT_K = 20  # the list length users see; recall there is gated too


def choose_precision(served: Retriever, vectors: np.ndarray, queries: np.ndarray, cfg: RetrievalConfig,
                     directory: Path) -> tuple[Retriever, dict[str, Any]]:
    """Measure the published (float32) index next to its int8 and bfloat16 variants (same
    settings): recall@20 and recall@candidates against exact search, latency, size on disk.
    The smallest variant whose relative recall loss is within ``max_quantization_loss`` on both
    replaces the float32 index in ``directory``; otherwise float32 stays."""
    import tempfile

    k = min(cfg.candidates, len(vectors))
    kth = {n: exact_scores(vectors, queries, n) for n in (SHORT_K, k)}

    def row(r: Retriever, size: int) -> dict[str, Any]:
        found = [r.search(q, k)[0] for q in queries]
        times = []
        for q in queries:
            started = time.perf_counter()
            r.search(q, k)
            times.append((time.perf_counter() - started) * 1000)
        return {"precision": str(r.params.get("precision", "float32")), "bytes": size,
                f"recall@{SHORT_K}": round(recall_vs_exact(vectors, queries, [f[:SHORT_K] for f in found], SHORT_K,
                                                           kth[SHORT_K]), 5),
                f"recall@{k}": round(recall_vs_exact(vectors, queries, found, k, kth[k]), 5),
                "p50_ms": round(float(np.percentile(times, 50)), 4),
                "p99_ms": round(float(np.percentile(times, 99)), 4)}

    rows = [row(served, _bytes(directory / layout.INDEX_DIR))]
    base = rows[0]
    chosen: Retriever | None = None
    for precision in PRECISIONS:
        variant = Retriever.from_params(vectors, cfg.candidates, {**served.params, "precision": precision})
        with tempfile.TemporaryDirectory() as tmp:
            variant.save(Path(tmp))
            rows.append(row(variant, _bytes(Path(tmp) / layout.INDEX_DIR)))
        loss = max(1 - rows[-1][m] / base[m] for m in (f"recall@{SHORT_K}", f"recall@{k}") if base[m] > 0)
        rows[-1]["relative_loss"] = round(loss, 5)
        rows[-1]["within_bound"] = loss <= cfg.max_quantization_loss
        if chosen is None and rows[-1]["within_bound"]:
            chosen = variant
    if chosen is not None:
        shutil.rmtree(directory / layout.INDEX_DIR)  # no float32 file may outlive the switch
        chosen.save(directory)
        served = Retriever.load(directory)
    published = str(served.params.get("precision", "float32"))
    log.info("index precision: %s published; %s", published, rows)
    return served, {"published": published, "max_relative_loss": cfg.max_quantization_loss, "variants": rows}


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def sample_queries(user_vectors: np.ndarray, item_vectors: np.ndarray, n: int,
                   seed: int = 11) -> tuple[np.ndarray, str]:
    """Up to n query vectors: real users' vectors (the serving distribution), else item vectors."""
    users = user_vectors[~np.isnan(user_vectors).any(axis=1)] if len(user_vectors) else user_vectors
    pool, source = (users, "user_vectors") if len(users) >= min(n, 10) else (item_vectors, "item_vectors")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    return pool[np.sort(pick)].astype(np.float32), source


def build_index(vectors: np.ndarray, queries: np.ndarray, cfg: RetrievalConfig, directory: Path,
                allow_brute_force: bool = True) -> tuple[Retriever, dict[str, Any]]:
    """Tune, save the chosen index into ``directory`` and measure it again as served.

    Returns the loaded index and the retrieval_tuning.json content (grid, chosen point with
    its re-measured ``verified_*`` numbers).
    """
    target = cfg.target_recall
    measured, summary = tune(vectors, queries, cfg, allow_brute_force)
    chosen = summary["chosen"]
    if chosen["kind"] == "tree_ah":
        retriever = measured.save_with_defaults(directory, chosen["leaves_to_search"], chosen["reorder"])
    else:
        measured.save(directory)
        retriever = Retriever.load(directory)
    kth = exact_scores(vectors, queries, summary["k"])
    served = measure(retriever, vectors, queries, summary["k"], kth)
    if served["recall"] < min(target, chosen["recall"]) - 1e-9:
        # Not expected (the saved tree is the measured one): never publish an index below target.
        log.warning("index: saved %s reaches recall %.4f < %.4f; publishing brute force instead",
                    retriever.params, served["recall"], target)
        retriever = Retriever.from_params(vectors, cfg.candidates, {"kind": "brute_force"})
        retriever.save(directory)
        retriever = Retriever.load(directory)
        served = measure(retriever, vectors, queries, summary["k"], kth)
        chosen = summary["chosen"] = {**summary["grid"][0], "rule": "fallback: the tuned index missed the target"}
    chosen.update(verified_recall=served["recall"], verified_p50_ms=served["p50_ms"],
                  verified_p99_ms=served["p99_ms"])
    return retriever, summary


def tune(vectors: np.ndarray, queries: np.ndarray, cfg: RetrievalConfig,
         allow_brute_force: bool = True) -> tuple[Retriever, dict[str, Any]]:
    """Measure the grid; return the index to publish (unsaved) and the measurements behind it.

    A tree choice comes back as the measured tree, whose search defaults are the grid's
    widest; ``Retriever.save_with_defaults`` stores it with the chosen ones.
    ``allow_brute_force=False`` restricts the choice to tree settings (brute force stays in
    the grid as the reference row) unless none reaches the target.
    """
    n = len(vectors)
    k = min(cfg.candidates, n)
    target = cfg.target_recall
    kth = exact_scores(vectors, queries, k)
    summary: dict[str, Any] = {"items": n, "dim": int(vectors.shape[1]), "k": k, "queries": len(queries),
                               "target_recall": target, "leaves": 0, "grid": []}
    grid: list[dict[str, Any]] = summary["grid"]
    tuned = cfg.tune
    if n < cfg.brute_force_below or not tuned:
        # Small catalogue (exact and cheap) or tuning switched off: the configured index, measured.
        configured = Retriever.build(vectors, cfg)
        if configured.params["kind"] != "brute_force":
            grid.append(measure(Retriever.from_params(vectors, cfg.candidates, {"kind": "brute_force"}),
                                vectors, queries, k, kth))
            summary["leaves"] = configured.params["leaves"]
        grid.append(measure(configured, vectors, queries, k, kth))
        summary["chosen"] = {**grid[-1], "rule": f"configured (brute_force_below={cfg.brute_force_below}, "
                                                 f"tune={tuned})"}
        return configured, summary

    brute = Retriever.from_params(vectors, cfg.candidates, {"kind": "brute_force"})
    grid.append(measure(brute, vectors, queries, k, kth))
    leaves = cfg.num_leaves or max(2, int(math.sqrt(n)))
    reorders = sorted({max(k, m * k) for m in REORDER_MULTIPLES})
    searches = sorted({min(leaves, max(1, round(f * leaves))) for f in LEAF_FRACTIONS})
    # One tree probed at search time with every setting: one training instead of one per point,
    # and the very tree that is then published.
    tree = Retriever.from_params(vectors, cfg.candidates, {"kind": "tree_ah", "leaves": leaves,
                                                           "leaves_to_search": max(searches),
                                                           "reorder": max(reorders)})
    grid.extend(measure_settings(tree, [(s, r) for r in reorders for s in searches], vectors, queries, k, kth))
    summary["leaves"] = leaves

    shortlist = [p for p in grid if p["kind"] == "brute_force" and allow_brute_force]
    for reorder in reorders:
        ok = [p for p in grid if p["kind"] == "tree_ah" and p["reorder"] == reorder and p["recall"] >= target]
        if ok:
            shortlist.append(min(ok, key=lambda p: p["leaves_to_search"]))
    best = min(shortlist, key=lambda p: p["p50_ms"]) if shortlist else grid[0]
    if allow_brute_force and grid[0]["p50_ms"] <= best["p50_ms"] * (1 + EXACT_PREFERENCE):
        best = grid[0]
    rule = (f"per re-order size the fewest leaves with recall@{k} >= {target}; of those"
            f"{' and brute force' if allow_brute_force else ''}, the lowest p50 latency"
            f"{f' (brute force if within {EXACT_PREFERENCE:.0%})' if allow_brute_force else ''}")
    summary["chosen"] = {**best, "rule": rule if shortlist else "no tree setting reached the target: brute force"}
    return (brute if best["kind"] == "brute_force" else tree), summary


def measure(retriever: Retriever, vectors: np.ndarray, queries: np.ndarray, k: int, kth: np.ndarray,
            leaves_to_search: int = -1, reorder: int = -1) -> dict[str, Any]:
    """Recall@k against exact search and per-query latency of one setting (-1 = as built)."""
    return measure_settings(retriever, [(leaves_to_search, reorder)], vectors, queries, k, kth)[0]


def measure_settings(retriever: Retriever, settings: list[tuple[int, int]], vectors: np.ndarray,
                     queries: np.ndarray, k: int, kth: np.ndarray) -> list[dict[str, Any]]:
    """Each (leaves_to_search, reorder) setting's recall@k and p50/p99 latency, one query at a time.

    Settings take turns on every query (in a rotating order) so that a burst of load on a shared
    machine lands on all of them alike instead of skewing whichever was being measured.
    """
    for q in queries[:WARMUP_QUERIES]:
        for search, reorder in settings:
            retriever.search_with(q, k, search, reorder)
    found: list[list[np.ndarray]] = [[] for _ in settings]
    ms: list[list[float]] = [[] for _ in settings]
    for i, q in enumerate(queries):
        for j in np.roll(np.arange(len(settings)), i):
            search, reorder = settings[j]
            started = time.perf_counter()
            found[j].append(retriever.search_with(q, k, search, reorder))
            ms[j].append((time.perf_counter() - started) * 1000)
    points = []
    for (search, reorder), hits, times in zip(settings, found, ms, strict=True):
        params = dict(retriever.params)
        if params["kind"] == "tree_ah":
            params["leaves_to_search"] = params["leaves_to_search"] if search < 0 else search
            params["reorder"] = params["reorder"] if reorder < 0 else reorder
            params["leaf_fraction"] = round(int(params["leaves_to_search"]) / int(params["leaves"]), 4)  # type: ignore[call-overload]
        points.append({**params, "recall": round(recall_vs_exact(vectors, queries, hits, k, kth), 5),
                       "p50_ms": round(float(np.percentile(times, 50)), 4),
                       "p99_ms": round(float(np.percentile(times, 99)), 4),
                       "mean_results": round(float(np.mean([len(f) for f in hits])), 1)})
    return points
