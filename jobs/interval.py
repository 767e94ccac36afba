"""What one DAG run works on: its data interval, model version and artifact directory.

Every task derives the same ``Interval`` from the Airflow context, so tasks pass nothing but
small summaries through XCom and each is idempotent for its interval: re-running a task
rewrites the same files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blink.config import Config

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Interval:
    cfg: Config
    run_id: str
    as_of_ms: int  # the end of the data interval: nothing at or after it is used

    @classmethod
    def from_airflow(cls, cfg: Config, context: Mapping[str, Any]) -> Interval:
        end = context["data_interval_end"] or context["logical_date"]
        return cls(cfg, str(context["run_id"]), int(end.timestamp() * 1000))

    @property
    def version(self) -> str:
        when = datetime.fromtimestamp(self.as_of_ms / 1000, UTC).strftime("%Y%m%dT%H%M")
        return f"{when}-{hashlib.sha1(self.run_id.encode()).hexdigest()[:6]}"

    @property
    def artifact_dir(self) -> Path:
        path = self.cfg.layout.version(self.version)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def interval_id(self) -> str:
        return datetime.fromtimestamp(self.as_of_ms / 1000, UTC).strftime("%Y%m%dT%H%M")

    def as_of(self, tag: str) -> int:
        """Cut-off of each view of the data: the temporal split.

        train: embeddings are fitted and ranker features computed before it; the ranker learns
        from the interactions in [train, eval). eval: offline metrics use the state at it and
        score the interactions in [eval, serve). serve: the newest state, which is published.
        """
        test = self.cfg.split.test_hours * HOUR_MS
        label = self.cfg.split.label_hours * HOUR_MS
        return {"serve": self.as_of_ms, "eval": self.as_of_ms - test,
                "train": self.as_of_ms - test - label}[tag]
