"""Ingest: landing files -> contract validation -> the Parquet lake; rejects -> dead-letter queue.

Every record is checked by contracts.validation (the same rules the API applies), so bad
data never reaches training. Events land partitioned by event date and hour; re-running an
interval overwrites exactly the partitions it writes (dynamic partition overwrite) and
rewrites its own dead-letter batch, so a re-run neither duplicates nor loses anything.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blink.config import Config
from contracts.dlq import DeadLetter, DeadLetterQueue
from jobs.run import Run

log = logging.getLogger(__name__)
KINDS = ("items", "users", "events")
KIND_OF = {"items": "item", "users": "user", "events": "event"}
ID_OF = {"items": "item_id", "users": "user_id", "events": "event_id"}


def landing_files(landing: Path, table: str) -> list[Path]:
    folder = landing / table
    return sorted(p for p in folder.glob("*") if p.suffix in (".parquet", ".jsonl", ".json", ".csv"))


def _json_lines(spark: Any, path: Path) -> Any:
    """Any supported file as an RDD of (source, JSON text), keeping the original payload."""
    if path.suffix == ".parquet":
        rdd = spark.read.parquet(str(path)).toJSON()
    elif path.suffix == ".csv":
        rdd = spark.read.option("header", True).option("inferSchema", True).csv(str(path)).toJSON()
    else:
        rdd = spark.read.text(str(path)).rdd.map(lambda row: row[0])
    source = f"landing:{path.name}"
    return rdd.map(lambda text: (source, text))


def validate_partition(kind: str, now_ms: int) -> Any:
    """A mapPartitions function: ('ok', record) or ('bad', DeadLetter fields)."""

    def run(rows: Iterator[tuple[str, str]]) -> Iterator[tuple[str, Any]]:
        from contracts.validation import validate

        for source, text in rows:
            try:
                record = json.loads(text)
            except ValueError as exc:
                yield "bad", (source, text, f"not valid JSON: {exc}")
                continue
            if not isinstance(record, dict):
                yield "bad", (source, text, "a record must be a JSON object")
                continue
            errors = validate(kind, record, now_ms=now_ms)
            if errors:
                yield "bad", (source, text, "; ".join(errors))
            else:
                yield "ok", record

    return run


def run(spark: Any, cfg: Config, interval: Run) -> dict[str, dict[str, int]]:
    """Validate every landing file into the lake; returns sent/accepted/dead-lettered per table."""
    landing, lake = cfg.var / "landing", cfg.var / "lake"
    dlq = DeadLetterQueue(cfg.var / "dlq")
    now_ms = int(time.time() * 1000)
    report: dict[str, dict[str, int]] = {}
    for table in KINDS:
        files = landing_files(landing, table)
        if not files:
            continue
        rdd = _json_lines(spark, files[0])
        for path in files[1:]:
            rdd = rdd.union(_json_lines(spark, path))
        checked = rdd.mapPartitions(validate_partition(KIND_OF[table], now_ms)).cache()
        bad = checked.filter(lambda r: r[0] == "bad").map(lambda r: r[1]).collect()
        good = checked.filter(lambda r: r[0] == "ok").map(lambda r: json.dumps(r[1]))
        letters = [DeadLetter(source=s, kind=KIND_OF[table], payload=p, reason=why, at_ms=now_ms)
                   for s, p, why in bad]
        dlq.add_batch_file(f"{table}-{interval.interval_id}", letters)
        frame = _typed(spark, table, good)
        sent = checked.count()
        accepted_rows = frame.count()
        frame = frame.dropDuplicates([ID_OF[table]])
        accepted = frame.count()
        _write(frame, table, lake)
        checked.unpersist()
        report[table] = {"sent": sent, "accepted": accepted, "duplicates": accepted_rows - accepted,
                         "dead_lettered": len(letters)}
        log.info("ingest %s: %s", table, report[table])
    return report


def _typed(spark: Any, table: str, good_json: Any) -> Any:
    """Valid records as a typed DataFrame (the schema follows the Avro contract)."""
    from pyspark.sql import functions as F

    schemas = {
        "events": "event_id string, user_id string, session_id string, item_id string, "
                  "event_type string, timestamp long, device string, value double, "
                  "context map<string,string>",
        "items": "item_id string, category string, price double, created_at long, title string",
        "users": "user_id string, signup_at long, country string, attributes map<string,string>",
    }
    df = spark.read.schema(schemas[table]).json(good_json)
    if table == "events":
        ts = (F.col("timestamp") / 1000).cast("timestamp")
        df = df.withColumn("date", F.date_format(ts, "yyyy-MM-dd")).withColumn("hour", F.hour(ts))
    return df


def _write(frame: Any, table: str, lake: Path) -> None:
    target = str(lake / table)
    if table == "events":
        # Dynamic partition overwrite: only the (date, hour) partitions present are replaced.
        frame.repartition("date").write.mode("overwrite").partitionBy("date", "hour").parquet(target)
    else:
        frame.coalesce(1).write.mode("overwrite").parquet(target)
