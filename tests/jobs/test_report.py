"""The evaluation report: HTML table, valid PNG plots, JSON, the versions index and the targets."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from blink import layout
from jobs.evaluate import targets
from jobs.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
K = 20


def metrics(recall: float, ndcg: float, mrr: float, coverage: float) -> dict[str, float]:
    return {f"recall@{K}": recall, f"ndcg@{K}": ndcg, f"mrr@{K}": mrr, "coverage": coverage}


def table() -> dict[str, Any]:
    """Numbers of the shape a demo run produces (two-stage > retrieval > popularity, new = popularity)."""
    new = metrics(0.1625, 0.0996, 0.1393, 0.0071)
    return {
        "all": {"users": 2067, "popularity": metrics(0.1067, 0.0634, 0.0922, 0.0188),
                "retrieval": metrics(0.2230, 0.1455, 0.1893, 0.4469),
                "two_stage": metrics(0.2379, 0.1567, 0.2100, 0.4069)},
        "head": {"users": 365, "popularity": metrics(0.0655, 0.0524, 0.1126, 0.0188),
                 "retrieval": metrics(0.1429, 0.0937, 0.1371, 0.3684),
                 "two_stage": metrics(0.1736, 0.1152, 0.1810, 0.3485)},
        "tail": {"users": 1460, "popularity": metrics(0.1077, 0.0601, 0.0792, 0.0106),
                 "retrieval": metrics(0.2530, 0.1661, 0.2106, 0.3942),
                 "two_stage": metrics(0.2665, 0.1765, 0.2290, 0.3217)},
        "new": {"users": 242, "popularity": new, "retrieval": new, "two_stage": new},
    }


def tuning() -> dict[str, Any]:
    grid: list[dict[str, Any]] = [{"kind": "brute_force", "recall": 1.0, "p50_ms": 1.12, "p99_ms": 2.4,
                                   "mean_results": 500.0}]
    for reorder in (1000, 2000, 4000):
        for j, search in enumerate((3, 6, 16, 32, 63, 158, 316)):
            grid.append({"kind": "tree_ah", "leaves": 316, "leaves_to_search": search, "reorder": reorder,
                         "leaf_fraction": round(search / 316, 4), "recall": min(1.0, 0.9 + 0.06 * j),
                         "p50_ms": 0.05 * (j + 1) * reorder / 1000, "p99_ms": 0.12 * (j + 1) * reorder / 1000,
                         "mean_results": 500.0})
    chosen = {**grid[2], "rule": "per re-order size the fewest leaves ...", "verified_recall": grid[2]["recall"],
              "verified_p50_ms": 0.26, "verified_p99_ms": 0.6}
    return {"items": 100_000, "dim": 64, "k": 500, "queries": 300, "query_source": "user_vectors",
            "target_recall": 0.95, "leaves": 316, "grid": grid, "chosen": chosen}


def artifact(tmp_path: Path, version: str = "20261123T2200-02058d", passed: bool = True,
             importance: bool = True, tuned: bool = True) -> Path:
    directory = tmp_path / "artifacts" / version
    directory.mkdir(parents=True)
    gate = {"passed": passed, "reason": ("ok: " if passed else "NOT PUBLISHED: ") + "two-stage ndcg@20 0.1567 vs ...",
            "new": 0.1567}
    (directory / layout.EVAL).write_text(json.dumps({"version": version, "k": K, "table": table(),
                                                   "targets": targets(table(), K), "gate": gate}))
    if importance:
        gains = [[f"feature_{i:02d}", 60.0 / (i + 1)] for i in range(40)]
        (directory / "ranker_importance.json").write_text(json.dumps(gains))
    if tuned:
        (directory / "retrieval_tuning.json").write_text(json.dumps(tuning()))
    return directory


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_report_has_the_table_the_plots_and_json(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "eval"
    page = write_report(artifact(tmp_path), out)
    version_dir = out / "20261123T2200-02058d"
    assert page == version_dir / "index.html"
    html = page.read_text()
    for text in ("recall@20", "ndcg@20", "mrr@20", "coverage", "popularity", "retrieval", "two-stage",
                 "0.2379", "0.1567", "2067", "head", "tail", "new", "feature_00", "published"):
        assert text in html, text
    # Target checks: +7.7 % NDCG over retrieval, 2.23x recall over popularity on all users.
    assert "+7.7%" in html and "2.23" in html
    # The chosen retrieval point is stated and highlighted in the grid table.
    assert "6/316 leaves, reorder 1000" in html and "class=chosen" in html

    pngs = sorted(version_dir.glob("*.png"))
    names = {p.name for p in pngs}
    assert {"metric_recall_at_20.png", "metric_ndcg_at_20.png", "metric_mrr_at_20.png", "metric_coverage.png",
            "ranker_importance.png", "retrieval_tuning.png"} <= names
    for png in pngs:
        assert png.name in html, f"{png.name} is not shown on the page"
        width, height = png_size(png)
        assert width > 300 and height > 200
        assert png.stat().st_size > 5_000, f"{png.name} looks empty"

    data = json.loads((version_dir / "report.json").read_text())
    assert data["targets"]["met"] is True
    assert len(data["ranker_importance"]) == 25
    assert data["retrieval_tuning"]["chosen"]["leaves_to_search"] == 6


def test_versions_index_lists_every_version_newest_first(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "eval"
    write_report(artifact(tmp_path, "20261123T2100-aaaaaa"), out)
    write_report(artifact(tmp_path, "20261123T2200-bbbbbb", passed=False), out)
    index = (out / "index.html").read_text()
    assert "20261123T2100-aaaaaa/index.html" in index and "20261123T2200-bbbbbb/index.html" in index
    assert index.index("20261123T2200-bbbbbb") < index.index("20261123T2100-aaaaaa")
    assert "blocked" in index
    assert "NOT published" in (out / "20261123T2200-bbbbbb" / "index.html").read_text()


def test_report_without_importance_or_tuning_still_renders(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "eval"
    html = write_report(artifact(tmp_path, importance=False, tuned=False), out).read_text()
    assert "ranker_importance.json missing" in html and "retrieval_tuning.json missing" in html
    assert len(list((out / "20261123T2200-02058d").glob("metric_*.png"))) == 4


def test_targets_gain_ratio_and_misses() -> None:
    t = targets(table(), K)
    assert t["by_bucket"]["all"]["ndcg_gain"] == pytest.approx(0.1567 / 0.1455 - 1)
    assert t["by_bucket"]["all"]["recall_ratio"] == pytest.approx(0.2379 / 0.1067)
    assert t["met"] is True
    # New users get popularity from every system: no gain, ratio 1.
    assert t["by_bucket"]["new"]["ndcg_gain"] == pytest.approx(0.0)
    assert not t["by_bucket"]["new"]["ndcg_gain_met"] and not t["by_bucket"]["new"]["recall_ratio_met"]
    weak = table()
    weak["all"]["two_stage"] = metrics(0.15, 0.150, 0.2, 0.4)
    t = targets(weak, K)
    assert not t["by_bucket"]["all"]["ndcg_gain_met"] and not t["by_bucket"]["all"]["recall_ratio_met"]
    assert t["met"] is False


def test_evaluate_writes_the_report_before_the_gate_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blocked model still gets its report; the gate's message points at it."""
    from types import SimpleNamespace

    import numpy as np

    from blink import config
    from jobs import evaluate
    from jobs.interval import Interval

    cfg = config.load("test", {"BLINK_PATHS__VAR_DIR": str(tmp_path / "var")})
    run = Interval(cfg, "manual__report", 1_795_471_200_000)

    def row(user: str, bucket: str, events: float, two: float) -> dict[str, Any]:
        scores = {"popularity": 0.1, "retrieval": 0.3, "two_stage": two}
        return {"user": user, "bucket": bucket, "events": events,
                "lists": {s: [f"i{j}" for j in range(3)] for s in scores},
                "metrics": {s: {"recall": v, "ndcg": v, "mrr": v} for s, v in scores.items()}}

    rows = [row(f"u{j}", "known", float(j), 0.4) for j in range(10)] + [row("n0", "new", 0.0, 0.1)]
    monkeypatch.setattr(evaluate.labels, "window", lambda *a: {r["user"]: ["i9"] for r in rows})
    model = SimpleNamespace(user_index={}, item_ids=np.array([f"i{j}" for j in range(50)]), history=[],
                            consumed=lambda user: [])
    monkeypatch.setattr(evaluate, "cached_model", lambda *a: model)
    monkeypatch.setattr(evaluate, "map_partitions", lambda spark, items, fn: rows)
    # The head-to-head needs the lake (tests/system runs it for real); here only its place in the report.
    versus = {"k": cfg.eval.k, "notes": ["ease: skipped for the test"], "best_baseline": {"known": "als_tuned"},
              "table": {"blink": {"known": {"ndcg": 0.4, "recall": 0.5, "users": 10}},
                        "als_tuned": {"known": {"ndcg": 0.35, "recall": 0.45, "users": 10}}}}
    monkeypatch.setattr(evaluate.head_to_head, "compare", lambda *a: versus)
    published = tmp_path / "published"
    published.mkdir()
    better = {"all": {"two_stage": {f"ndcg@{cfg.eval.k}": 0.9}}}
    (published / layout.EVAL).write_text(json.dumps({"table": better}))

    with pytest.raises(evaluate.GateFailed, match="NOT PUBLISHED.*report: .*index.html"):
        evaluate.evaluate(None, cfg, run, published)
    page = cfg.layout.eval_reports / run.version / "index.html"
    assert page.exists() and "NOT published" in page.read_text()
    saved = json.loads((run.artifact_dir / layout.EVAL).read_text())
    assert saved["targets"]["by_bucket"]["all"]["ndcg_gain_met"] is True
    # Blink 0.40 vs the best baseline 0.35: that gate passes, and the report shows the comparison.
    assert saved["baseline_gate"]["passed"] and saved["baseline_gate"]["best"] == "als_tuned"
    text = page.read_text()
    assert "Blink vs strong baselines" in text and "<b>0.3500</b>" in text and "ease: skipped for the test" in text
    assert (page.parent / "baselines.png").exists()


def test_report_includes_the_session_evaluation(tmp_path: Path) -> None:
    directory = artifact(tmp_path)
    (directory / layout.SESSION_EVAL).write_text(json.dumps({
        "k": 20, "train_sessions": 900, "test_sessions": 120,
        "table": {"session_gru": {"hr@20": 0.5123, "mrr@20": 0.2, "predictions": 400},
                  "cooccurrence": {"hr@20": 0.37, "mrr@20": 0.17, "predictions": 400},
                  "popularity": {"hr@20": 0.18, "mrr@20": 0.05, "predictions": 400}}}))
    page = write_report(directory, tmp_path / "out").read_text()
    assert "Sessions: next item" in page and "0.5123" in page and "cooccurrence" in page


def test_report_shows_the_ranker_gate_and_the_index_precision(tmp_path: Path) -> None:
    directory = artifact(tmp_path)
    tuned = json.loads((directory / "retrieval_tuning.json").read_text())
    tuned["precision"] = {"published": "int8", "max_relative_loss": 0.005, "variants": [
        {"precision": "float32", "bytes": 4000, "recall@20": 1.0, "p50_ms": 0.2},
        {"precision": "int8", "bytes": 1000, "recall@20": 0.998, "p50_ms": 0.1, "relative_loss": 0.002,
         "within_bound": True}]}
    (directory / "retrieval_tuning.json").write_text(json.dumps(tuned))
    gate = {"user": {"holdout_groups": 4, "weights": [2.0, 0.5, 2.0], "fused_ndcg@20": 0.1666,
                     "ranker_ndcg@20": 0.1501},
            "session": {"holdout_groups": 47, "weights": [0.5, 2.0, 0.0], "fused_ndcg@20": 0.1847,
                        "ranker_ndcg@20": 0.2051}}
    (directory / layout.FUSION).write_text(json.dumps({"weights": {k: g["weights"] for k, g in gate.items()},
                                                       "ranker": {"user": False, "session": True}, "gate": gate}))
    out = tmp_path / "reports" / "eval"
    html = write_report(directory, out).read_text()
    assert "Index precision (published: int8" in html and "0.998" in html
    assert "Ranker or fused source order" in html
    user_row = html[html.index("<td class=l>user</td>"):]
    assert "0.1666" in user_row and "fused source order" in user_row.split("</tr>")[0]
    assert "ranker</td>" in html[html.index("<td class=l>session</td>"):].split("</tr>")[0]
    data = json.loads((out / directory.name / "report.json").read_text())
    assert data["ranker_gate"]["ranker"] == {"user": False, "session": True}
