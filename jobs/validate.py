"""Validate: a Great Expectations checkpoint over the run's new lake partition, before training.

The events suite runs on exactly the batch this interval's ingest wrote
(``lake/events/date=*/hour=*/batch=<interval>``); the items suite on the item table. Data
Docs go to var/reports/data_docs, one entry per run. A failed expectation stops the run here,
so nothing downstream is trained on the data and the published version keeps serving.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from blink.config import Config
from jobs.run import Run

log = logging.getLogger(__name__)


def new_events(cfg: Config, interval: Run) -> pd.DataFrame:
    lake = cfg.var / "lake" / "events"
    if not any(lake.glob(f"date=*/hour=*/batch={interval.interval_id}")):
        return pd.DataFrame()
    frame = pd.read_parquet(lake, filters=[("batch", "=", interval.interval_id)])
    return frame.drop(columns=[c for c in ("date", "hour", "batch", "context") if c in frame.columns])


def run(cfg: Config, interval: Run) -> dict[str, Any]:
    from jobs import quality

    gx_dir, docs = cfg.var / "gx", cfg.var / "reports" / "data_docs"
    summary: dict[str, Any] = {"docs": str(docs / "index.html")}
    events = new_events(cfg, interval)
    checks = [(pd.read_parquet(cfg.var / "lake" / "items"), "items")]
    if len(events):
        checks.insert(0, (events, "events"))
    else:
        log.info("no new events in batch %s: only the item table is validated", interval.interval_id)
        summary["events"] = "no new events this interval"
    for frame, suite in checks:
        result = quality.validate_frame(frame, suite, f"{suite}-{interval.interval_id}", gx_dir, docs)
        summary[suite] = {"evaluated": result.evaluated, "success": result.success, "rows": len(frame)}
        quality.gate(result)
    return summary
