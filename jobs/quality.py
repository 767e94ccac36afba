"""Validate: a Great Expectations checkpoint over the run's new lake partition, before training.

The events suite runs on exactly the batch this interval's ingest wrote
(``lake/events/date=*/hour=*/batch=<interval>``); the items suite on the item table. Data
Docs go to var/reports/data_docs, one entry per run, readable offline, with a page of the
records the run's ingest dead-lettered (by kind and reason). A failed expectation stops the
run here, so nothing downstream is trained on the data and the published version keeps serving.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from blink.config import Config
from contracts.dlq import DeadLetter, DeadLetterQueue
from contracts.tables import TABLES
from jobs.interval import Interval

log = logging.getLogger(__name__)


def new_events(cfg: Config, interval: Interval) -> pd.DataFrame:
    lake = cfg.layout.table("events")
    if not any(lake.glob(f"date=*/hour=*/batch={interval.interval_id}")):
        return pd.DataFrame()
    frame = pd.read_parquet(lake, filters=[("batch", "=", interval.interval_id)])
    return frame.drop(columns=[c for c in ("date", "hour", "batch", "context") if c in frame.columns])


def dead_letters(cfg: Config, interval: Interval) -> list[DeadLetter]:
    """What this interval's ingest dead-lettered (one DLQ batch per table and interval)."""
    queue = DeadLetterQueue(cfg.layout.dlq)
    return [letter for table in TABLES.values() for letter in queue.batch_entries(f"{table}-{interval.interval_id}")]


def run(cfg: Config, interval: Interval) -> dict[str, Any]:
    from jobs import data_docs, expectations

    gx_dir, docs = cfg.layout.gx, cfg.layout.data_docs
    summary: dict[str, Any] = {"docs": str(docs / "index.html")}
    # Before the suites run, so the pages they build link the run's dead letters.
    summary["dead_lettered"] = data_docs.write_dead_letters(docs, interval.interval_id, dead_letters(cfg, interval))
    events = new_events(cfg, interval)
    checks: list[tuple[pd.DataFrame, expectations.SuiteName]] = [(pd.read_parquet(cfg.layout.table("items")), "items")]
    if len(events):
        checks.insert(0, (events, "events"))
    else:
        log.info("no new events in batch %s: only the item table is validated", interval.interval_id)
        summary["events"] = "no new events this interval"
    for frame, suite in checks:
        result = expectations.validate_frame(frame, suite, f"{suite}-{interval.interval_id}", gx_dir, docs)
        summary[suite] = {"evaluated": result.evaluated, "success": result.success, "rows": len(frame)}
        expectations.gate(result)
    return summary
