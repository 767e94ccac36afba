"""Evaluate: offline metrics on the held-out test window, and the publish gate.

Three systems answer for every user active in [eval, serve): popularity (trending as of
the eval cut-off), retrieval only (ScaNN order) and the two-stage pipeline. Users are
bucketed by activity: head (top fraction by events), tail, and new (unknown at the
cut-off; every system can only give them popularity). jobs/head_to_head.py then asks Blink
and the strong baselines (popularity, tuned ALS, EASE, item-kNN, co-visitation, session-kNN)
the same questions, for known users and new users after a few clicks.

Two gates: the two-stage NDCG may not fall below the published model's by more than
eval.tolerance (refuses to publish), nor below the best baseline's by more than
eval.baseline_tolerance (refuses with eval.baseline_gate = block; a logged warning with warn).
The SPEC's quality targets (two-stage vs retrieval NDCG gain, vs popularity recall ratio) are
computed and reported, not gated; the HTML/PNG/JSON report is written before the gate decides,
so a blocked model has its report too.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from blink import layout
from blink.candidates import SourceSizes
from blink.config import Config
from blink.errors import GateFailed
from blink.feature_matrix import USER_INDEX, Context
from jobs import head_to_head, labels
from jobs.interval import Interval
from jobs.metrics import mrr_at, ndcg_at, recall_at
from jobs.spark import cached_model, get_spark, map_partitions

log = logging.getLogger(__name__)
SYSTEMS = ("popularity", "retrieval", "two_stage")
NDCG_GAIN_TARGET = 0.05  # two-stage over retrieval only: relative NDCG@k gain (SPEC)
RECALL_RATIO_TARGET = 2.0  # two-stage over popularity: recall@k ratio (SPEC)


def score_users(directory: str, as_of_ms: int, k: int, sizes: SourceSizes,
                rows: Iterator[tuple[str, list[str]]]) -> Iterator[dict[str, Any]]:
    """Per user: the three systems' top-k and their metrics. Runs inside Spark workers."""
    from blink.pipeline import Pipeline

    pipe = Pipeline(cached_model(directory, "eval"), sizes=sizes)
    ctx = Context(now_ms=as_of_ms)
    for user_id, truth_list in rows:
        truth = set(truth_list)
        pos = pipe.model.user_index.get(user_id)
        seen = pipe.model.consumed(user_id)
        popular = [i for i, _ in pipe.trending(k, exclude=seen)]
        lists = {"popularity": popular}
        if pipe.user_position(user_id) is None:
            bucket = "new"
            lists["retrieval"] = lists["two_stage"] = popular
        else:
            bucket = "known"
            lists["retrieval"] = [i for i, _ in pipe.recommend(user_id, k, ctx, rank=False) or []]
            lists["two_stage"] = [i for i, _ in pipe.recommend(user_id, k, ctx) or []]
        events = float(pipe.model.user_features[pos][USER_INDEX["u_events"]]) if pos is not None else 0.0
        yield {"user": user_id, "bucket": bucket, "events": events, "lists": lists,
               "metrics": {s: {"recall": recall_at(lists[s], truth, k), "ndcg": ndcg_at(lists[s], truth, k),
                               "mrr": mrr_at(lists[s], truth, k)} for s in SYSTEMS}}


def summarise(rows: list[dict[str, Any]], n_items: int, head_fraction: float, k: int) -> dict[str, Any]:
    known = sorted((r["events"] for r in rows if r["bucket"] == "known"), reverse=True)
    cut = known[max(0, int(len(known) * head_fraction) - 1)] if known else 0
    for r in rows:
        if r["bucket"] == "known":
            r["bucket"] = "head" if r["events"] >= cut else "tail"
    table: dict[str, Any] = {}
    for bucket in ("all", "head", "tail", "new"):
        part = [r for r in rows if bucket == "all" or r["bucket"] == bucket]
        if not part:
            continue
        table[bucket] = {"users": len(part)}
        for s in SYSTEMS:
            table[bucket][s] = {f"{m}@{k}": float(np.mean([r["metrics"][s][m] for r in part]))
                                for m in ("recall", "ndcg", "mrr")}
            table[bucket][s]["coverage"] = len({i for r in part for i in r["lists"][s]}) / max(n_items, 1)
    return table


def run(cfg: Config, interval: Interval) -> dict[str, Any]:
    """Score the new model and gate it against the version serving now."""
    from jobs.publish import published_dir

    return evaluate(get_spark(cfg), cfg, interval, published_dir(cfg))


def evaluate(spark: Any, cfg: Config, interval: Interval, published_dir: Path | None) -> dict[str, Any]:
    """Offline metrics on the test window, the report, then the gate (raises GateFailed)."""
    directory = str(interval.artifact_dir)
    k = cfg.eval.k
    truth = labels.window(spark, str(cfg.layout.table("events")), interval.as_of("eval"), interval.as_of("serve"))
    model = cached_model(directory, "eval")
    # Only items first seen in the test window count: re-consumption is filtered at serve time.
    rows_in = []
    for user, items in truth.items():
        seen = set(model.consumed(user))
        fresh = sorted(set(items) - seen)
        if fresh:
            rows_in.append((user, fresh))
    random.Random(5).shuffle(rows_in)
    rows_in = rows_in[: cfg.eval.max_users]
    fn = partial(score_users, directory, interval.as_of("eval"), k, SourceSizes.from_config(cfg))
    rows = map_partitions(spark, rows_in, fn)
    table = summarise(rows, len(model.item_ids), cfg.head.user_fraction, k)
    report: dict[str, Any] = {"version": interval.version, "k": k, "table": table,
                              "targets": targets(table, k), "gate": gate(cfg, table, published_dir)}
    report["baselines"] = head_to_head.compare(cfg, interval, model)
    report["baseline_gate"] = head_to_head.gate(cfg, report["baselines"])
    (interval.artifact_dir / layout.EVAL).write_text(json.dumps(report, indent=1))
    log.info("evaluate: %s", json.dumps(report["table"].get("all")))
    log.info("evaluate targets: %s", describe_targets(report["targets"]))
    log.info("evaluate vs baselines: %s", report["baseline_gate"]["reason"])
    from jobs.report import write_report  # matplotlib: only where the report is drawn

    report["report"] = str(write_report(interval.artifact_dir, cfg.layout.eval_reports))
    if not report["gate"]["passed"]:
        raise GateFailed(f"{report['gate']['reason']} (report: {report['report']})")
    if not report["baseline_gate"]["passed"]:
        if cfg.eval.baseline_gate == "block":
            raise GateFailed(f"{report['baseline_gate']['reason']} (report: {report['report']})")
        log.warning("published anyway (eval.baseline_gate = warn): %s", report["baseline_gate"]["reason"])
    return report


def targets(table: dict[str, Any], k: int) -> dict[str, Any]:
    """The SPEC's quality targets, per bucket; ``met`` is the headline on all users.

    ``ndcg_gain``: two-stage NDCG@k over retrieval only, relative (target >= 5 %);
    ``recall_ratio``: two-stage recall@k over popularity (target >= 2x). None when the
    baseline is 0 (the two-stage system then meets it if it found anything at all).
    """
    ndcg, recall = f"ndcg@{k}", f"recall@{k}"
    by_bucket: dict[str, Any] = {}
    for bucket, row in table.items():
        two, ret, pop = row["two_stage"], row["retrieval"], row["popularity"]
        gain = two[ndcg] / ret[ndcg] - 1 if ret[ndcg] > 0 else None
        ratio = two[recall] / pop[recall] if pop[recall] > 0 else None
        by_bucket[bucket] = {
            "ndcg_gain": gain, "ndcg_gain_met": two[ndcg] > 0 if gain is None else gain >= NDCG_GAIN_TARGET,
            "recall_ratio": ratio,
            "recall_ratio_met": two[recall] > 0 if ratio is None else ratio >= RECALL_RATIO_TARGET,
        }
    headline = by_bucket.get("all", {})
    return {"ndcg_metric": ndcg, "recall_metric": recall, "ndcg_gain_target": NDCG_GAIN_TARGET,
            "recall_ratio_target": RECALL_RATIO_TARGET, "by_bucket": by_bucket,
            "met": bool(headline.get("ndcg_gain_met") and headline.get("recall_ratio_met"))}


def describe_targets(t: dict[str, Any]) -> str:
    """One line for logs and the CLI: the headline (all users) target checks."""
    row = t["by_bucket"].get("all", {})
    gain, ratio = row.get("ndcg_gain"), row.get("recall_ratio")
    gain_s = "n/a" if gain is None else f"{gain:+.1%}"
    ratio_s = "n/a" if ratio is None else f"{ratio:.2f}x"
    gain_ok = "met" if row.get("ndcg_gain_met") else "MISSED"
    ratio_ok = "met" if row.get("recall_ratio_met") else "MISSED"
    return (f"two-stage vs retrieval {t['ndcg_metric']} {gain_s} (target >= {t['ndcg_gain_target']:.0%}: {gain_ok}); "
            f"two-stage vs popularity {t['recall_metric']} {ratio_s} "
            f"(target >= {t['recall_ratio_target']:g}x: {ratio_ok})")


def gate(cfg: Config, table: dict[str, Any], published_dir: Path | None) -> dict[str, Any]:
    key = f"ndcg@{cfg.eval.k}"
    new = table.get("all", {}).get("two_stage", {}).get(key, 0.0)
    if published_dir is None or not (published_dir / layout.EVAL).exists():
        return {"passed": True, "reason": "no published model to compare with", "new": new}
    old = json.loads((published_dir / layout.EVAL).read_text())["table"]["all"]["two_stage"][key]
    floor = old * (1 - cfg.eval.tolerance)
    passed = new >= floor
    reason = (f"two-stage {key} {new:.4f} vs published {published_dir.name} {old:.4f} "
              f"(floor {floor:.4f} at tolerance {cfg.eval.tolerance:.0%})")
    return {"passed": passed, "reason": ("ok: " if passed else "NOT PUBLISHED: ") + reason, "new": new, "old": old}
