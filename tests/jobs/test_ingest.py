"""No landing file and no record can stop the ``ingest`` task, for real: local Spark, a
redis-server for the stream, the files and entries an attacker or a broken producer leaves.

Each of these used to fail the run, and with it every later run (the landing file was never
marked taken): an event with an unknown field nested 500 levels (Spark could not pickle it),
a line nested 100 000 levels (the JSON parser's recursion), a truncated Parquet file (no
footer) and one whose pages are corrupt (readable footer: it fails only when its rows are read).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from blink import config
from blink.keys import EVENTS, Keys
from contracts.dlq import QUARANTINE, DeadLetterQueue
from jobs.interval import Interval
from tools.redis_server import RedisServer

pytestmark = pytest.mark.integration  # Spark and a redis-server

HOUR = 3_600_000
AS_OF = 1_790_000_000_000 - 1_790_000_000_000 % HOUR
PREFIX = "ingestq"


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> config.Config:
    monkeypatch.setenv("BLINK_PATHS__VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("BLINK_REDIS__KEY_PREFIX", PREFIX)
    monkeypatch.setenv("BLINK_SPARK__MASTER", "local[2]")
    monkeypatch.setenv("BLINK_SPARK__SHUFFLE_PARTITIONS", "2")
    monkeypatch.setenv("BLINK_SPARK__DRIVER_MEMORY", "1g")
    redis.Redis(port=redis_server.port).delete(Keys(PREFIX).global_(EVENTS))
    return config.load()


def event(name: str, n: int = 0, **extra: Any) -> dict[str, Any]:
    return {"event_id": f"{name}-{n}", "session_id": f"sess-{n % 4}", "item_id": f"i{n % 9}",
            "event_type": "view", "device": "mobile", "timestamp": AS_OF - HOUR - 1000 * n} | extra


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


def parquet_bytes(rows: list[dict[str, Any]], path: Path) -> bytes:
    pq.write_table(pa.Table.from_pylist(rows), path, compression="gzip")
    return path.read_bytes()


def test_no_landing_file_or_record_stops_the_run_and_none_is_read_again(cfg: config.Config,
                                                                         tmp_path: Path) -> None:
    from jobs import ingest

    folder = cfg.layout.landing / "events"
    folder.mkdir(parents=True)
    good = [event("good", n) for n in range(20)]
    (folder / "good.jsonl").write_text("".join(json.dumps(e) + "\n" for e in good))
    hostile = event("deep", colour="red", extra=nested(500))  # valid: unknown fields are dropped
    (folder / "hostile.jsonl").write_text(json.dumps(hostile) + "\n" + "[" * 100_000 + "\n"
                                          + json.dumps(event("after-deep")) + "\n")
    in_parquet = [event("pq", n) for n in range(10)]
    whole = parquet_bytes(in_parquet, folder / "fine.parquet")
    (folder / "truncated.parquet").write_bytes(whole[: len(whole) // 2])  # no footer: fails when opened
    rotten = bytearray(parquet_bytes([event("rotten", n) for n in range(2000)], tmp_path / "r.parquet"))
    for i in range(200, len(rotten) - 2000):  # pages garbled, footer intact: fails only when read
        rotten[i] ^= 0x5A
    (folder / "rotten.parquet").write_bytes(bytes(rotten))
    # The stream as an older server, or another writer, left it: raw bodies, foreign entries.
    r = redis.Redis.from_url(str(cfg.redis.url))
    stream = Keys(PREFIX).global_(EVENTS)
    r.xadd(stream, {"e": json.dumps(event("stream-deep", extra=nested(500)))})
    r.xadd(stream, {"e": json.dumps(event("stream-ok"), indent=1)})  # line breaks inside one entry
    r.xadd(stream, {"something": "else"})
    r.xadd(stream, {"e": b"\xff\xfe not utf-8"})

    interval = Interval(cfg, "manual__hostile", AS_OF)
    report = ingest.run(cfg, interval)  # completes

    events = report["events"]
    assert events["quarantined"] == 2 and events["files"] == 6, events
    assert events["sent"] == 20 + 3 + 10 + 2  # the quarantined files' rows were never read
    assert (events["accepted"], events["duplicates"], events["dead_lettered"]) == (20 + 2 + 10 + 2, 0, 1)
    assert report["stream"]["drained"] == 2 and report["stream"]["dead_lettered"] == 2
    import pandas as pd

    lake = pd.read_parquet(cfg.layout.table("events"))
    assert {"deep-0", "after-deep-0", "stream-deep-0", "stream-ok-0", "pq-0", "good-19"} <= set(lake["event_id"])
    assert not {"colour", "extra"} & set(lake.columns)  # what the contract does not define is not kept
    assert not lake["event_id"].str.startswith("rotten").any()

    dlq = DeadLetterQueue(cfg.layout.dlq)
    letters = list(dlq.batch_entries(f"events-{interval.interval_id}"))
    files = {x.source: x for x in letters if x.source.startswith(QUARANTINE)}
    assert set(files) == {QUARANTINE + "events/truncated.parquet", QUARANTINE + "events/rotten.parquet"}
    assert all(x.reason.startswith("file: could not be read (") for x in files.values())
    assert "footer" in files[QUARANTINE + "events/truncated.parquet"].reason.lower()
    assert json.loads(files[QUARANTINE + "events/rotten.parquet"].payload)["file"] == "events/rotten.parquet"
    (deep_line,) = [x for x in letters if x.source == "landing:hostile.jsonl"]
    assert deep_line.reason == "not valid JSON: nested too deeply to read"
    stream_letters = list(dlq.batch_entries("stream-from-0_0"))
    assert sorted(x.reason.split(" (")[0] for x in stream_letters) == [
        "stream entry: has no event field 'e'", "stream entry: not UTF-8 text"]

    # Every file is marked taken by this run, the quarantined ones too: the next run reads none of them.
    taken = json.loads(ingest.manifest_path(cfg.layout.lake).read_text())
    assert {f"events/{p.name}": interval.interval_id for p in folder.iterdir()}.items() <= taken.items()
    later = Interval(cfg, "manual__later", AS_OF + HOUR)
    assert ingest.files_for(cfg.layout.landing, cfg.layout.lake, "events", later.interval_id) == []
    again = ingest.run(cfg, later)
    assert "events" not in again and again["stream"]["drained"] == 0
    assert dlq.batch_names(f"events-{later.interval_id}") == []
