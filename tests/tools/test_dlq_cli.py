"""``blink dlq`` stats / list / replay on a real queue under a temporary var dir."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from contracts.dlq import DeadLetter, DeadLetterQueue
from contracts.validation import validate
from jobs.ingest import files_for
from tools.dlq_cli import dlq

HOUR = 3_600_000


def run(*args: str) -> Result:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(dlq, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def rejected(kind: str, record: dict[str, Any], at_ms: int, source: str = "api") -> DeadLetter:
    """A letter as ingest writes it: the reason is what the contract said at ``at_ms``."""
    errors = validate(kind, record, now_ms=at_ms)  # type: ignore[arg-type]
    assert errors, record
    return DeadLetter(source, kind, json.dumps(record), "; ".join(errors), at_ms)


@pytest.fixture
def seeded(var_dir: Path) -> dict[str, Any]:
    """A producer whose clock ran 2 days ahead had its events rejected 3 days ago ("too far in
    the future"); they are valid now. Next to them, letters that are still broken."""
    now = int(time.time() * 1000)
    then = now - 72 * HOUR
    event = {"user_id": "u-1", "session_id": "s-1", "item_id": "i-1", "event_type": "view",
             "timestamp": then + 48 * HOUR, "device": "mobile"}
    fixed = [{**event, "event_id": f"late-{n}"} for n in range(3)]
    letters = [rejected("event", r, then) for r in fixed]
    letters += [
        rejected("event", {**event, "event_id": "secs", "timestamp": now // 1000}, then),
        rejected("event", {**event, "event_id": "clik", "event_type": "clik"}, then),
        DeadLetter("landing:bad.jsonl", "event", "{oops", "not valid JSON: Expecting property name", then),
        rejected("item", {"item_id": "i-9", "category": "shoes", "created_at": then + 48 * HOUR}, then),
        rejected("item", {"item_id": "i-8", "category": "shoes", "price": -1.0}, then),
    ]
    DeadLetterQueue(var_dir / "dlq").add(letters)
    return {"var": var_dir, "fixed_ids": [r["event_id"] for r in fixed]}


def test_stats_counts_per_kind_and_problem_with_a_total(seeded: dict[str, Any]) -> None:
    out = run("stats").output
    assert "timestamp: too far in the future" in out and "created_at: too far in the future" in out
    assert "event_type: unknown value" in out and "price: must not be negative" in out
    assert "not valid JSON" in out
    assert re.search(r"event letters\W+6\b", out) and re.search(r"item letters\W+2\b", out)
    assert re.search(r"total\W+8\b", out)


def test_stats_on_an_empty_queue(var_dir: Path) -> None:
    assert "the dead-letter queue is empty" in run("stats").output


def test_list_as_json_table_kind_and_limit(seeded: dict[str, Any]) -> None:
    letters = [json.loads(line) for line in run("list", "--json", "--limit", "100").output.splitlines()]
    assert len(letters) == 8 and set(letters[0]) == {"source", "kind", "payload", "reason", "at_ms"}
    items = [json.loads(line) for line in run("list", "--kind", "item", "--json").output.splitlines()]
    assert [json.loads(x["payload"])["item_id"] for x in items] == ["i-9", "i-8"]
    assert len(run("list", "--json", "--limit", "2").output.splitlines()) == 2
    table = run("list", "--limit", "3").output
    assert "3 of 8 letters" in table and "too far in the future" in table


def test_replay_lands_exactly_the_records_that_pass_now(seeded: dict[str, Any]) -> None:
    var: Path = seeded["var"]
    out = run("replay").output
    assert "replayed 4 letter(s), 4 still invalid" in out
    (events_file,) = (var / "landing" / "events").glob("replay-*.jsonl")
    (items_file,) = (var / "landing" / "items").glob("replay-*.jsonl")
    landed = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert [r["event_id"] for r in landed] == seeded["fixed_ids"]
    assert all(validate("event", r) == [] for r in landed)
    assert [json.loads(line)["item_id"] for line in items_file.read_text().splitlines()] == ["i-9"]
    # the next DAG run's ingest takes the new landing file
    assert events_file in files_for(var / "landing", var / "lake", "events", "next-run")
    queue = DeadLetterQueue(var / "dlq")
    assert queue.count() == 4  # 8 before = 4 replayed + 4 still invalid
    assert not any('"late-' in x.payload for x in queue)
    again = run("replay").output
    assert "replayed 0 letter(s), 4 still invalid" in again
    assert len(list((var / "landing" / "events").glob("replay-*"))) == 1  # nothing new to land


def test_replay_of_one_kind_leaves_the_others(seeded: dict[str, Any]) -> None:
    var: Path = seeded["var"]
    assert "replayed 1 letter(s), 1 still invalid" in run("replay", "--kind", "item").output
    assert not (var / "landing" / "events").exists()
    assert DeadLetterQueue(var / "dlq").count("event") == 6


def test_replay_recovers_rows_the_old_readers_rejected(var_dir: Path) -> None:
    """Before rows were read per value, one ISO-8601 time turned a CSV's timestamp column into
    text and every row was rejected ("got str '1796102325000'"), and ISO-8601 was never
    accepted. Those letters are valid under today's reading: replay lands them as numbers."""
    now = int(time.time() * 1000)
    iso = datetime.fromtimestamp((now - HOUR) / 1000, UTC).isoformat()
    row = {"event_id": "csv-1", "user_id": "42", "session_id": "s", "item_id": "i", "event_type": "view",
           "timestamp": str(now - HOUR), "device": "mobile", "value": None}
    letters = [
        DeadLetter("file:mixed.csv", "event", json.dumps(row),
                   f"timestamp: expected an integer of epoch milliseconds, got str '{now - HOUR}'", now),
        DeadLetter("api", "event", json.dumps({**row, "event_id": "api-1", "timestamp": iso}),
                   "timestamp: expected an integer of epoch milliseconds, got str", now),
        DeadLetter("file:mixed.csv", "event", json.dumps({**row, "event_id": "csv-2", "timestamp": "soon"}),
                   "timestamp: expected an integer of epoch milliseconds, got str 'soon'", now),
    ]
    DeadLetterQueue(var_dir / "dlq").add(letters)
    out = run("replay").output
    assert "replayed 2 letter(s), 1 still invalid" in out
    (landed,) = (var_dir / "landing" / "events").glob("replay-*.jsonl")
    rows = [json.loads(line) for line in landed.read_text().splitlines()]
    assert [(r["event_id"], r["timestamp"]) for r in rows] == [("csv-1", now - HOUR), ("api-1", now - HOUR)]
    (still,) = DeadLetterQueue(var_dir / "dlq").entries()
    assert "ISO-8601" in still.reason  # the reason the contract gives today
