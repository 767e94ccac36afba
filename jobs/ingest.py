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
Every record is checked by contracts.intake, the same door the API and the importers use;
the columns come from the contract's newest schema (contracts.derived).

Nothing in a landing file can stop the run (so one bad input cannot stop every later run):
a record that cannot be parsed or checked is a dead letter (contracts.intake); a file Spark
cannot read (a truncated Parquet file, say) is quarantined: left out of the run, one letter
saying why (source ``quarantine:<table>/<file>``), counted as ``quarantined`` in the report
and marked taken like the others, so later runs never read it again (a re-run of the same
interval tries it again, and quarantines it again). The file stays where it is, for whoever
fixes it and lands it again (``blink ingest``).
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from blink.config import Config
from contracts import intake
from contracts.derived import spark_ddl
from contracts.dlq import DeadLetter, DeadLetterQueue, quarantined_file
from contracts.tables import KEYS, KIND_OF, TABLES
from contracts.validation import Kind
from jobs.interval import Interval
from jobs.spark import get_spark

log = logging.getLogger(__name__)
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


def run(cfg: Config, interval: Interval) -> dict[str, Any]:
    """Drain the live stream, then validate new landing files into the lake.

    Per table: sent = accepted + duplicates + dead_lettered.
    """
    spark = get_spark(cfg)
    from blink import redis_client
    from blink.keys import Keys
    from jobs import stream

    landing, lake = cfg.layout.landing, cfg.layout.lake
    client, keys = redis_client.client(cfg, timeout_s=30.0), Keys(cfg.redis.key_prefix)
    dlq = DeadLetterQueue(cfg.layout.dlq)
    now_ms = int(time.time() * 1000)
    report: dict[str, Any] = {"stream": stream.drain(client, keys, landing, lake, dlq)}
    for table in TABLES.values():
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

    kind = KIND_OF[table]
    checked, letters, quarantined = _check_files(spark, table, files, now_ms)
    dlq.add_batch_file(f"{table}-{batch}", letters + [
        quarantined_file(kind, f"{table}/{path.name}", path.stat().st_size, why, now_ms)
        for path, why in quarantined])
    good = checked.filter(lambda r: not isinstance(r, DeadLetter)).map(json.dumps)
    frame = spark.read.schema(spark_ddl(kind)).json(good)
    sent, valid = checked.count(), frame.count()
    key = KEYS[kind]
    if kind == "event":
        frame = frame.dropDuplicates([key])
        target = lake / table
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
            "dead_lettered": len(letters), "quarantined": len(quarantined)}


def _check_files(spark: Any, table: str, files: list[Path], now_ms: int) -> tuple[Any, list[DeadLetter],
                                                                                  list[tuple[Path, str]]]:
    """Every record of the files checked: the checked RDD (cached, each element a valid record or
    its letter), the letters, and the files left out with the reason (Spark could not read them).

    A file that fails when it is opened (a Parquet footer) is left out at once; one that fails
    only when its rows are read (a corrupt page) fails the whole job: then each file is checked
    on its own to find it, and the job runs again without it. The usual run pays nothing for this.
    """
    from py4j.protocol import Py4JError  # type: ignore[import-untyped]  # Spark's JVM bridge, untyped
    from pyspark.errors import PySparkException

    errors = (PySparkException, Py4JError)  # what a JVM or Python-worker failure raises on the driver
    quarantined: list[tuple[Path, str]] = []
    readable: dict[Path, Any] = {}
    for path in files:
        try:
            readable[path] = _json_lines(spark, path)
        except errors as exc:
            quarantined.append((path, _why(exc)))
    try:
        checked, letters = _checked(spark, list(readable.values()), KIND_OF[table], now_ms)
    except errors as exc:
        log.warning("ingest %s: a landing file failed the job (%s); reading each on its own", table, _why(exc))
        for path, rdd in list(readable.items()):
            try:  # the same work as the whole job's, on this file alone
                _checked(spark, [rdd], KIND_OF[table], now_ms)[0].unpersist()
            except errors as file_exc:
                quarantined.append((path, _why(file_exc)))
                del readable[path]
        checked, letters = _checked(spark, list(readable.values()), KIND_OF[table], now_ms)  # not a file's fault: raise
    for path, why in quarantined:
        log.warning("ingest %s: quarantined landing file %s: %s", table, path.name, why)
    return checked, letters, quarantined


def _checked(spark: Any, rdds: list[Any], kind: Kind, now_ms: int) -> tuple[Any, list[DeadLetter]]:
    """Each (source, JSON text) becomes its valid record or its dead letter, on the workers."""
    rdd = spark.sparkContext.union(rdds) if rdds else spark.sparkContext.emptyRDD()
    checked = rdd.mapPartitions(functools.partial(intake.split_lines, kind=kind, now_ms=now_ms)).cache()
    try:
        return checked, checked.filter(lambda r: isinstance(r, DeadLetter)).collect()
    except BaseException:
        checked.unpersist()
        raise


def _why(exc: BaseException) -> str:
    """A Spark error in a line: what the JVM said and its root cause, not its stack trace."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # py4j's first line is "An error occurred while calling o66.parquet."; the JVM's message follows.
    said = next((line[2:] for line in lines if line.startswith(": ")), lines[0] if lines else type(exc).__name__)
    causes = [line[len("Caused by: "):] for line in lines if line.startswith("Caused by: ")]
    return (said + (f" (caused by {causes[-1]})" if causes else ""))[:500]


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
