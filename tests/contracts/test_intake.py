"""The door: every input is either valid or exactly one dead letter that says why."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts import intake
from contracts.dlq import DeadLetter
from contracts.intake import Received, split, split_lines, split_received
from contracts.validation import normalise

NOW = 1_700_000_000_000


def event(n: int, **over: Any) -> dict[str, Any]:
    base = {"event_id": f"e-{n}", "user_id": None, "session_id": "s-1", "item_id": f"i-{n}",
            "event_type": "view", "timestamp": NOW - n, "device": "mobile"}
    return base | over


def test_split_accounts_for_every_record() -> None:
    records: list[Any] = [event(1), event(2, timestamp=NOW // 1000), "not an object", event(3),
                          event(4, event_type="clik")]
    out = split(records, "event", "api", NOW)
    assert len(out.valid) + len(out.rejected) == len(records)
    assert [r["event_id"] for r in out.valid] == ["e-1", "e-3"]  # in input order, as given
    assert [r.index for r in out.rejected] == [1, 2, 4]
    seconds = out.rejected[0]
    assert seconds.problems[0].startswith("timestamp: looks like seconds")
    assert seconds.letter == DeadLetter("api", "event", json.dumps(records[1]), "; ".join(seconds.problems), NOW)
    assert out.rejected[1].problems[0].startswith("event: expected a mapping")
    assert out.letters == [r.letter for r in out.rejected]


def test_split_lines_keeps_the_text_as_received() -> None:
    good = json.dumps(event(1))
    bad = '{"event_id": "e-2",   "timestamp": 1}'  # odd spacing: the payload keeps it
    lines = [("landing:a.jsonl", good), ("landing:a.jsonl", bad), ("landing:b.jsonl", "{oops"),
             ("landing:b.jsonl", "[1, 2]")]
    out = list(split_lines(lines, "event", NOW))
    assert out[0] == normalise("event", event(1))  # in the contract's shape
    letters = out[1:]
    assert all(isinstance(x, DeadLetter) for x in letters)
    assert [(x.source, x.payload) for x in letters] == [(s, t) for s, t in lines[1:]]  # type: ignore[union-attr]
    assert letters[1].reason.startswith("not valid JSON")  # type: ignore[union-attr]
    assert letters[2].reason == "a record must be a JSON object"  # type: ignore[union-attr]


def test_valid_records_come_out_with_times_in_epoch_ms() -> None:
    iso = event(1, timestamp="2023-11-14T22:13:19.999Z")
    out = split([iso, event(2)], "event", "api", NOW)
    assert [r["timestamp"] for r in out.valid] == [NOW - 1, NOW - 2]
    assert iso["timestamp"] == "2023-11-14T22:13:19.999Z"  # the input is not changed
    lines = [("landing:a.jsonl", json.dumps(iso))]
    assert list(split_lines(lines, "event", NOW)) == [normalise("event", event(1))]


def test_split_received_keeps_the_text_and_rejects_an_unreadable_row_alone() -> None:
    rows = [Received(event(1), payload="e-1 as read"), Received(None, "{oops", "not valid JSON (line 2)"),
            Received(event(3, timestamp="2023-11-14T22:13:19"), payload="row 3 as read")]
    out = split_received(rows, "event", "file:x.jsonl", NOW)
    assert [r["event_id"] for r in out.valid] == ["e-1"]
    assert [(r.index, r.letter.payload) for r in out.rejected] == [(1, "{oops"), (2, "row 3 as read")]
    assert out.rejected[0].letter.reason == "not valid JSON (line 2)"
    assert "no time zone" in out.rejected[1].letter.reason


def test_split_lines_reads_a_csv_row_cell_by_cell() -> None:
    """Spark reads a CSV landing file guessing one type per column: a column mixing epoch ms
    and ISO-8601 comes as text, ids as numbers, empty cells as null."""
    row = {"event_id": 7, "user_id": None, "session_id": "s-1", "item_id": 12, "event_type": "view",
           "timestamp": str(NOW - 5), "device": "mobile", "value": None, "context": None}
    iso = {**row, "event_id": 8, "timestamp": "2023-11-14T22:13:19.000Z"}
    out = list(split_lines([("landing:shop.csv", json.dumps(row)), ("landing:shop.csv", json.dumps(iso))],
                           "event", NOW))
    assert [(r["event_id"], r["item_id"], r["timestamp"]) for r in out] == [
        ("7", "12", NOW - 5), ("8", "12", NOW - 1000)]
    assert list(split_lines([("landing:shop.jsonl", json.dumps(row))], "event", NOW))[0].reason  # JSON: as typed


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


def test_split_lines_hands_on_only_what_the_contract_defines() -> None:
    """The issue's ~500-level nested unknown field: valid, and gone from what goes on (Spark could
    not pickle it, so it stopped every ingest)."""
    hostile = event(1, colour="red", extra=nested(500))
    (out,) = split_lines([("landing:a.jsonl", json.dumps(hostile))], "event", NOW)
    assert out == normalise("event", event(1)) and "extra" not in out


def test_a_line_nested_too_deep_to_parse_is_one_letter_and_the_rest_go_on() -> None:
    lines = [("landing:a.jsonl", "[" * 100_000), ("landing:a.jsonl", '{"a":' * 50_000),
             ("landing:a.jsonl", json.dumps(event(2)))]
    out = list(split_lines(lines, "event", NOW))
    assert [x.reason for x in out[:2]] == ["not valid JSON: nested too deeply to read"] * 2  # type: ignore[union-attr]
    assert out[2] == normalise("event", event(2))


def test_a_record_whose_checking_raises_is_dead_lettered_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mock: no input known today makes validation raise (the deep nesting above no longer
    does), so the fault is injected into ``validate`` for one record, to hold the guard that
    keeps the next unknown one from stopping a batch."""
    real = intake.validate

    def flaky(kind: Any, record: Any, now_ms: int | None = None) -> list[str]:
        if record.get("event_id") == "e-2":
            raise RecursionError("maximum recursion depth exceeded")
        return real(kind, record, now_ms=now_ms)

    monkeypatch.setattr(intake, "validate", flaky)
    lines = [("landing:a.jsonl", json.dumps(event(n))) for n in (1, 2, 3)]
    out = list(split_lines(lines, "event", NOW))
    assert [o["event_id"] for o in out if isinstance(o, dict)] == ["e-1", "e-3"]
    (letter,) = [o for o in out if isinstance(o, DeadLetter)]
    assert letter.payload == lines[1][1]
    assert letter.reason == "record: could not be processed (RecursionError: maximum recursion depth exceeded)"
    api = split([event(1), event(2), event(3)], "event", "api", NOW)  # the same guard at every door
    assert [r["event_id"] for r in api.valid] == ["e-1", "e-3"]
    assert api.rejected[0].problems[0].startswith("record: could not be processed")
