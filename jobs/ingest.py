"""Ingest: stream + landing files -> contract validation -> the Parquet lake; rejects -> DLQ.

Exactly once, and idempotent per data interval:
- the live stream is first drained into a landing file (jobs/stream.py);
- a manifest records which interval took each landing file; a run takes the files no run
  took yet plus the ones its own interval took before (so a re-run redoes the same work);
- events land in ``lake/events/date=D/hour=H/batch=<interval>``: a re-run overwrites exactly
  its own batch partitions (dynamic partition overwrite) and never touches earlier batches;
  event ids already in earlier batches are dropped (duplicates are accepted once);
- items and users are snapshot tables: merged with what the lake has (newest wins);
- rejects of a run go to one dead-letter batch file per table and interval, replaced on re-run.
Every record is checked by contracts.validation, the same rules the API applies.
"""

from __future__ import annotations

import json
import logging
import shutil
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
SCHEMAS = {
    "events": "event_id string, user_id string, session_id string, item_id string, event_type string, "
              "timestamp long, device string, value double, context map<string,string>, "
              "referrer string, price double",
    "items": "item_id string, category string, price double, created_at long, title string",
    "users": "user_id string, signup_at long, country string, attributes map<string,string>",
}
SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")


def manifest_path(lake: Path) -> Path:
    return lake / "_checkpoints" / "landing.json"


def files_for(landing: Path, lake: Path, table: str, interval_id: str) -> list[Path]:
    """Landing files no run has taken yet, plus those this interval took before."""
    taken = json.loads(manifest_path(lake).read_text()) if manifest_path(lake).exists() else {}
    files = sorted(p for p in (landing / table).glob("*") if p.suffix in SUFFIXES)
    return [p for p in files if taken.get(f"{table}/{p.name}", interval_id) == interval_id]


def mark_taken(lake: Path, table: str, files: list[Path], interval_id: str) -> None:
    from blink.files import write_text

    path = manifest_path(lake)
    taken = json.loads(path.read_text()) if path.exists() else {}
    taken.update({f"{table}/{p.name}": interval_id for p in files})
    write_text(path, json.dumps(taken, indent=0, sort_keys=True))


def _json_lines(spark: Any, path: Path) -> Any:
    """Any supported file as an RDD of (source, JSON text), keeping the original payload."""
    if path.suffix == ".parquet":
        rdd = spark.read.parquet(str(path)).toJSON()
    elif path.suffix == ".csv":
        rdd = spark.read.option("header", True).option("inferSchema", True).csv(str(path)).toJSON()
    else:
        rdd = spark.read.text(str(path)).rdd.map(lambda row: row[0]).filter(lambda line: line.strip())
    source = f"landing:{path.name}"
    return rdd.map(lambda text: (source, text))


def validate_partition(kind: str, now_ms: int) -> Any:
    """A mapPartitions function: ('ok', record) or ('bad', (source, payload, reason))."""

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
            yield ("bad", (source, text, "; ".join(errors))) if errors else ("ok", record)

    return run


def run(spark: Any, cfg: Config, interval: Run) -> dict[str, Any]:
    """Drain the live stream, then validate new landing files into the lake.

    Per table: sent = accepted + duplicates + dead_lettered.
    """
    from blink import redis_server
    from blink.keys import Keys
    from jobs import stream

    landing, lake = cfg.var / "landing", cfg.var / "lake"
    client, keys = redis_server.client(cfg, timeout_s=30.0), Keys(cfg.redis.key_prefix)
    dlq = DeadLetterQueue(cfg.var / "dlq")
    now_ms = int(time.time() * 1000)
    report: dict[str, Any] = {"stream": stream.drain(client, keys, landing, lake)}
    for table in KINDS:
        files = files_for(landing, lake, table, interval.interval_id)
        if files:
            report[table] = _ingest_table(spark, table, files, lake, dlq, interval.interval_id, now_ms)
            mark_taken(lake, table, files, interval.interval_id)
            log.info("ingest %s: %s", table, report[table])
    stream.trim(client, keys, lake)  # only now: the drained events are in the lake
    return report


def _ingest_table(spark: Any, table: str, files: list[Path], lake: Path, dlq: DeadLetterQueue,
                  batch: str, now_ms: int) -> dict[str, int]:
    from pyspark.sql import functions as F

    rdd = spark.sparkContext.union([_json_lines(spark, p) for p in files])
    checked = rdd.mapPartitions(validate_partition(KIND_OF[table], now_ms)).cache()
    bad = checked.filter(lambda r: r[0] == "bad").map(lambda r: r[1]).collect()
    letters = [DeadLetter(source=s, kind=KIND_OF[table], payload=p, reason=why, at_ms=now_ms)
               for s, p, why in bad]
    dlq.add_batch_file(f"{table}-{batch}", letters)
    good = checked.filter(lambda r: r[0] == "ok").map(lambda r: json.dumps(r[1]))
    frame = spark.read.schema(SCHEMAS[table]).json(good)
    sent, valid = checked.count(), frame.count()
    key = ID_OF[table]
    if table == "events":
        frame = frame.dropDuplicates([key])
        target = lake / "events"
        if target.exists():  # ids already landed by earlier batches are duplicates
            earlier = spark.read.parquet(str(target)).where(F.col("batch") != batch).select(key)
            frame = frame.join(earlier, key, "left_anti")
        frame = frame.cache()
        accepted = frame.count()
        ts = (F.col("timestamp") / 1000).cast("timestamp")
        (frame.withColumn("date", F.date_format(ts, "yyyy-MM-dd")).withColumn("hour", F.hour(ts))
         .withColumn("batch", F.lit(batch))
         .repartition("date").write.mode("overwrite").partitionBy("date", "hour", "batch")
         .parquet(str(target)))
        frame.unpersist()
    else:
        accepted = frame.dropDuplicates([key]).count()
        _merge_snapshot(spark, frame, lake / table, key)
    checked.unpersist()
    return {"files": len(files), "sent": sent, "accepted": accepted, "duplicates": valid - accepted,
            "dead_lettered": len(letters)}


def _merge_snapshot(spark: Any, new: Any, target: Path, key: str) -> None:
    """Newest record per id wins; written beside the table, then swapped in by rename."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    previous = target.with_name(f".{target.name}.previous")
    if previous.exists() and not target.exists():  # a crash mid-swap: the old table is intact
        previous.rename(target)
    new = new.withColumn("_order", F.monotonically_increasing_id() + F.lit(1 << 40))
    merged = new
    if target.exists():
        merged = spark.read.parquet(str(target)).withColumn("_order", F.monotonically_increasing_id()).unionByName(new)
    latest = Window.partitionBy(key).orderBy(F.desc("_order"))
    out = merged.withColumn("_n", F.row_number().over(latest)).where("_n = 1").drop("_n", "_order")
    staging = target.with_name(f".{target.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    out.coalesce(1).write.parquet(str(staging))
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)
