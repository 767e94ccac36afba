"""The DAG's intake up to the quality gate, for real: `blink ingest`'s landing files -> the
``ingest`` task (local Spark, a real redis-server for the stream) -> the ``quality`` task (GX).

A shop whose visitors are mostly or only anonymous (``user_id`` null, as the contract allows)
must pass: the suite follows the contract, it does not add rules of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from blink import config
from contracts.dlq import DeadLetterQueue
from contracts.landing import accept_file
from jobs.interval import Interval
from tools.redis_server import RedisServer

pytestmark = pytest.mark.integration  # Spark and a redis-server

HOUR = 3_600_000
AS_OF = 1_790_000_000_000 - 1_790_000_000_000 % HOUR  # 2026-09-21T14:00Z


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> config.Config:
    monkeypatch.setenv("BLINK_PATHS__VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("BLINK_REDIS__KEY_PREFIX", "quality")
    monkeypatch.setenv("BLINK_SPARK__MASTER", "local[2]")
    monkeypatch.setenv("BLINK_SPARK__SHUFFLE_PARTITIONS", "2")
    monkeypatch.setenv("BLINK_SPARK__DRIVER_MEMORY", "1g")
    return config.load()


def sessions(anonymous_share: float, n_sessions: int = 60) -> list[dict[str, Any]]:
    """Sessions of 2-5 views; the first ``anonymous_share`` of them without a user."""
    events = []
    for s in range(n_sessions):
        user = None if s < anonymous_share * n_sessions else f"u{s % 7}"
        for step in range(2 + s % 4):
            record = {"event_id": f"s{s}-{step}", "session_id": f"sess-{s}", "item_id": f"i{(s + step) % 25}",
                      "event_type": "view", "device": "mobile", "timestamp": AS_OF - HOUR * (s % 20) - 1000 * step}
            if user is not None:
                record["user_id"] = user  # anonymous rows leave it out, as JSON producers do
            events.append(record)
    return events


def land(cfg: config.Config, tmp_path: Path, events: list[dict[str, Any]]) -> None:
    dlq = DeadLetterQueue(cfg.layout.dlq)
    events_file, items_file = tmp_path / "events.jsonl", tmp_path / "items.csv"
    events_file.write_text("".join(json.dumps(e) + "\n" for e in events))
    items_file.write_text("item_id,category,price\n" + "".join(f"i{n},c{n % 3},{n}.5\n" for n in range(25)))
    for path in (events_file, items_file):
        report = accept_file(path, cfg.layout.landing, dlq)
        assert report.dead_lettered == 0 and report.accepted == report.rows, report


@pytest.mark.parametrize("anonymous_share", [0.9, 1.0])
def test_mostly_anonymous_sessions_pass_the_quality_gate(cfg: config.Config, tmp_path: Path,
                                                         anonymous_share: float) -> None:
    from jobs import ingest, quality

    events = sessions(anonymous_share)
    land(cfg, tmp_path, events)
    # A producer's raw landing file, not checked by `blink ingest`: the run's ingest rejects
    # two of its lines, and the run's report shows them.
    raw = cfg.layout.landing / "events" / "producer.jsonl"
    raw.write_text(json.dumps({**events[0], "event_id": "late", "timestamp": "2026-09-21T10:00:00+00:00"}) + "\n"
                   + json.dumps({**events[0], "event_id": "secs", "timestamp": AS_OF // 1000}) + "\n{oops\n")
    # A raw CSV landing file whose timestamp column mixes epoch ms and ISO-8601 (Spark reads
    # the column as text): both rows land.
    (cfg.layout.landing / "events" / "shop.csv").write_text(
        "event_id,user_id,session_id,item_id,event_type,timestamp,device\n"
        f"csv-1,,sess-x,i1,view,{AS_OF - HOUR},tv\ncsv-2,7,sess-x,i2,view,2026-09-21T11:00:00Z,tv\n")
    interval = Interval(cfg, f"manual__{anonymous_share}", AS_OF)
    report = ingest.run(cfg, interval)
    assert report["events"]["accepted"] == len(events) + 3 and report["events"]["dead_lettered"] == 2

    summary = quality.run(cfg, interval)  # raises DataQualityError on a failed expectation

    assert summary["events"]["success"] and summary["events"]["rows"] == len(events) + 3
    assert summary["items"]["success"]
    lake = quality.new_events(cfg, interval).set_index("event_id")
    anonymous = sum("user_id" not in e for e in [*events, events[0]]) + 1  # "late" copies events[0]; csv-1
    assert lake["user_id"].isna().mean() == pytest.approx(anonymous / (len(events) + 3))
    assert lake.loc["late", "timestamp"] == AS_OF - 4 * HOUR  # ISO-8601, converted at the door
    assert lake.loc[["csv-1", "csv-2"], "timestamp"].tolist() == [AS_OF - HOUR, AS_OF - 3 * HOUR]
    assert lake.loc["csv-2", "user_id"] == "7"

    # The analysts' report: the run's dead letters by reason, offline.
    assert summary["dead_lettered"] == {"event": {"timestamp: looks like seconds": 1, "not valid JSON": 1}}
    index = (cfg.layout.data_docs / "index.html").read_text()
    assert f"dead_letters/{interval.interval_id}.html" in index and "https://cdn" not in index
