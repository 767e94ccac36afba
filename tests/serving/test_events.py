"""Live events against a real Redis: contract at the door, exactly-once append, accounting,
and the crash-safe drain into landing files."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import redis

from blink.errors import NotReady
from blink.keys import Keys
from contracts.dlq import DeadLetterQueue
from jobs import stream
from serving.event_log import EventLog

pytestmark = pytest.mark.integration  # a real redis-server
NOW = 1_790_000_000_000


def event(n: int, **over: object) -> dict[str, object]:
    base = {"event_id": f"ev-{n}", "user_id": f"u{n % 7}", "session_id": f"s{n % 3}", "item_id": f"i{n}",
            "event_type": "click", "timestamp": NOW + n, "device": "mobile", "value": None}
    return base | over


def log_for(client: redis.Redis, tmp_path: Path) -> EventLog:
    return EventLog(client, Keys("t"), DeadLetterQueue(tmp_path / "dlq"))


def test_accounting_on_a_mixed_batch(redis_client: redis.Redis, tmp_path: Path) -> None:
    log = log_for(redis_client, tmp_path)
    batch = [event(1), event(2), event(2), event(3, timestamp=(NOW // 1000)), event(4, event_type="clik"),
             "not an object", event(5)]
    result = log.accept(batch)
    assert (result.accepted, result.duplicates, result.rejected) == (3, 1, 3)
    assert result.accepted + result.duplicates + result.rejected == len(batch)  # nothing lost
    assert redis_client.xlen(log.stream) == 3
    assert [e["index"] for e in result.errors] == [3, 4, 5]
    assert "seconds" in result.errors[0]["errors"][0]
    dlq = DeadLetterQueue(tmp_path / "dlq")
    assert dlq.count("event") == 3
    assert json.loads(next(iter(dlq.entries("event"))).payload)["event_id"] == "ev-3"  # original payload kept


def test_a_retried_batch_is_accepted_once(redis_client: redis.Redis, tmp_path: Path) -> None:
    log = log_for(redis_client, tmp_path)
    batch = [event(n) for n in range(50)]
    results = []
    threads = [threading.Thread(target=lambda: results.append(log.accept(batch))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.accepted for r in results) == 50
    assert sum(r.duplicates for r in results) == 150
    assert redis_client.xlen(log.stream) == 50


def test_drain_is_exactly_once_across_crashes(redis_client: redis.Redis, tmp_path: Path) -> None:
    keys = Keys("t")
    log = log_for(redis_client, tmp_path)
    landing, lake, dlq = tmp_path / "landing", tmp_path / "lake", DeadLetterQueue(tmp_path / "dlq")
    log.accept([event(n) for n in range(10)])
    first = stream.drain(redis_client, keys, landing, lake, dlq)
    assert first["drained"] == 10
    # A crash after the landing file but before the checkpoint: simulate by forgetting the
    # checkpoint. The re-drain rewrites the same file (a superset), never a second copy.
    stream.checkpoint_path(lake).unlink()
    log.accept([event(n) for n in range(10, 15)])
    again = stream.drain(redis_client, keys, landing, lake, dlq)
    assert again["file"] == first["file"] and again["drained"] == 15
    files = list((landing / "events").glob("*.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == 15
    # Nothing new: nothing written. New events: a new file from the checkpoint on.
    assert stream.drain(redis_client, keys, landing, lake, dlq)["drained"] == 0
    log.accept([event(99)])
    assert stream.drain(redis_client, keys, landing, lake, dlq)["drained"] == 1
    ids = [json.loads(line)["event_id"]
           for f in (landing / "events").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert sorted(ids) == sorted({*ids}) and len(ids) == 16
    stream.trim(redis_client, keys, lake)
    assert redis_client.xlen(log.stream) <= 1  # only the checkpoint entry itself may stay


def test_a_full_stream_refuses_with_503_and_never_drops_an_accepted_event(redis_client: redis.Redis,
                                                                          tmp_path: Path) -> None:
    """The stream's cap (serving.stream_max_events): past it, 503 and nothing dead-lettered; what
    the stream already holds is never trimmed to make room; once ingest drains it, the retry lands
    and sent = accepted + duplicates + dead-lettered over the whole exchange."""
    log = EventLog(redis_client, Keys("t"), DeadLetterQueue(tmp_path / "dlq"), max_events=5)
    assert log.accept([event(n) for n in range(4)]).accepted == 4
    batch = [event(4), event(5), event(6), event(7, event_type="clik")]
    with pytest.raises(NotReady, match="holds its cap of 5 events"):
        log.accept(batch)
    assert redis_client.xlen(log.stream) == 5  # ev-4 fitted; ev-5 and ev-6 were refused, nothing trimmed
    assert DeadLetterQueue(tmp_path / "dlq").count("event") == 0 and log.refused_full == 2
    redis_client.xtrim(log.stream, maxlen=0)  # as ingest does once the events are in a landing file
    retry = log.accept(batch)
    assert (retry.accepted, retry.duplicates, retry.rejected) == (2, 1, 1)  # ev-4 is a duplicate
    assert DeadLetterQueue(tmp_path / "dlq").count("event") == 1
