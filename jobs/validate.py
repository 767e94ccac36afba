"""Validate: a Great Expectations checkpoint over the newest lake data, before training.

Runs the events suite on the interval's newest ``quality.window_hours`` and the items
suite on the item table; Data Docs go to var/reports/data_docs. A failed expectation
stops the run here, so nothing downstream (and nothing published) sees the bad data.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from blink.config import Config
from jobs.run import HOUR_MS, Run

log = logging.getLogger(__name__)


def run(cfg: Config, interval: Run) -> dict[str, Any]:
    from jobs import quality

    lake = cfg.var / "lake"
    start = interval.as_of_ms - cfg.quality.window_hours * HOUR_MS
    events = pd.read_parquet(lake / "events", filters=[("timestamp", ">=", start),
                                                       ("timestamp", "<", interval.as_of_ms)])
    events = events.drop(columns=[c for c in ("date", "hour", "batch", "context") if c in events.columns])
    items = pd.read_parquet(lake / "items")
    gx_dir, docs = cfg.var / "gx", cfg.var / "reports" / "data_docs"
    results = [
        quality.validate_frame(events, "events", f"events-{interval.interval_id}", gx_dir, docs),
        quality.validate_frame(items, "items", f"items-{interval.interval_id}", gx_dir, docs),
    ]
    for result in results:
        quality.gate(result)
    return {r.suite: {"evaluated": r.evaluated, "success": r.success} for r in results} | {
        "docs": str(results[0].docs_index)}
