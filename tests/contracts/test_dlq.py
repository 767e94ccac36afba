"""Dead-letter queue on real files: round trip, counts, stats, batch idempotence, durability."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.dlq import QUARANTINE, DeadLetter, DeadLetterQueue, quarantined_file, reason_keys

AT = 1_700_000_000_000  # 2023-11-14T22:13:20Z
REPO = Path(__file__).resolve().parents[2]


def letter(n: int = 0, kind: str = "event", reason: str = "timestamp: looks like seconds (1)",
           at_ms: int = AT) -> DeadLetter:
    payload = json.dumps({"event_id": f"bad-{n}", "session_id": "s\u0000broken"})
    return DeadLetter(source="landing:events.parquet", kind=kind, payload=payload,
                      reason=reason, at_ms=at_ms)


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    dlq = DeadLetterQueue(tmp_path / "dlq")
    letters = [letter(0), letter(1, kind="item"), letter(2)]
    assert dlq.add(letters) == 3
    assert sorted(dlq, key=lambda x: x.payload) == sorted(letters, key=lambda x: x.payload)
    assert list(dlq.entries(kind="event")) == [letters[0], letters[2]]
    assert list(dlq.entries(limit=1)) == [letters[0]]
    assert json.loads(letters[0].payload)["session_id"] == "s\x00broken"


def test_letters_go_to_the_utc_day_of_at_ms(tmp_path: Path) -> None:
    dlq = DeadLetterQueue(tmp_path)
    dlq.add([letter(0, at_ms=AT), letter(1, at_ms=AT + 2 * 3_600_000)])  # 00:13 next day UTC
    assert sorted(p.name for p in (tmp_path / "event").iterdir()) == \
        ["2023-11-14.jsonl", "2023-11-15.jsonl"]


def test_count(tmp_path: Path) -> None:
    dlq = DeadLetterQueue(tmp_path)
    assert dlq.count() == 0  # the directory does not even exist yet
    dlq.add(letter(n) for n in range(5))
    dlq.add([letter(9, kind="user")])
    assert (dlq.count(), dlq.count("event"), dlq.count("user"), dlq.count("item")) == (6, 5, 1, 0)


def test_stats_group_by_field_and_rule(tmp_path: Path) -> None:
    dlq = DeadLetterQueue(tmp_path)
    dlq.add([
        letter(0, reason="timestamp: looks like seconds (1700000000), send milliseconds"),
        letter(1, reason="timestamp: looks like seconds (1699999999), send milliseconds"),
        letter(2, reason="event_type: unknown value 'clik', allowed: view, click"
                         "; session_id: contains a control character (U+0000 at position 1)"),
        letter(3, reason="not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        letter(4, kind="recommendation", reason="items[3].score: must be a finite number"),
    ])
    assert dlq.stats() == {
        "event": {"timestamp: looks like seconds": 2, "event_type: unknown value": 1,
                  "session_id: contains a control character": 1, "not valid JSON": 1},
        "recommendation": {"items[].score: must be a finite number": 1},
    }


def test_reason_keys_count_a_problem_once_per_letter() -> None:
    assert reason_keys("a: too long (3 characters); a: too long (4 characters)") == ["a: too long"]


def test_batch_file_rerun_replaces_instead_of_duplicating(tmp_path: Path) -> None:
    dlq = DeadLetterQueue(tmp_path)
    dlq.add([letter(100)])  # streaming letters are never touched by batches
    first = [letter(n) for n in range(3)] + [letter(3, kind="item")]
    assert dlq.add_batch_file("events-20231114T2200", first) == 4
    assert dlq.add_batch_file("events-20231114T2200", first) == 4
    assert (dlq.count("event"), dlq.count("item")) == (4, 1)
    dlq.add_batch_file("events-20231114T2300", [letter(7)])  # another interval coexists
    assert dlq.count("event") == 5
    dlq.add_batch_file("events-20231114T2200", [letter(1)])  # the fix removed most rejects
    assert (dlq.count("event"), dlq.count("item")) == (3, 0)
    dlq.add_batch_file("events-20231114T2200", [])
    assert dlq.count() == 2
    assert not list(tmp_path.glob("*/batch-events-20231114T2200.jsonl"))
    assert not list(tmp_path.glob("*/.*")), "no temporary files are left behind"


def test_unsafe_names_are_refused(tmp_path: Path) -> None:
    dlq = DeadLetterQueue(tmp_path)
    with pytest.raises(ValueError, match="batch name"):
        dlq.add_batch_file("../escape", [letter()])
    with pytest.raises(ValueError, match="kind"):
        dlq.add([letter(kind="../event")])


def test_survives_reinstantiation(tmp_path: Path) -> None:
    DeadLetterQueue(tmp_path / "dlq").add([letter(0), letter(1)])
    DeadLetterQueue(tmp_path / "dlq").add_batch_file("b1", [letter(2)])
    again = DeadLetterQueue(tmp_path / "dlq")
    assert [json.loads(x.payload)["event_id"] for x in again] == ["bad-0", "bad-1", "bad-2"]


def test_torn_line_from_a_crash_is_skipped_and_not_joined(tmp_path: Path) -> None:
    dlq = DeadLetterQueue(tmp_path)
    dlq.add([letter(0)])
    day_file = tmp_path / "event" / "2023-11-14.jsonl"
    with open(day_file, "a", encoding="utf-8") as fh:
        fh.write('{"source": "api", "kind": "ev')  # a writer died mid-line
    dlq.add([letter(1)])
    assert [json.loads(x.payload)["event_id"] for x in dlq] == ["bad-0", "bad-1"]


def test_concurrent_appenders_in_processes_keep_lines_whole(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from contracts.dlq import DeadLetter, "
        "DeadLetterQueue\n"
        "q = DeadLetterQueue(Path(sys.argv[1]))\n"
        "for i in range(50):\n"
        "    q.add([DeadLetter('api', 'event', 'x' * 5000 + sys.argv[2], 'r: rule', "
        f"{AT}) for _ in range(4)])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(n)], cwd=REPO)
             for n in range(4)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    letters = list(DeadLetterQueue(tmp_path))
    assert len(letters) == 4 * 50 * 4
    assert {x.payload[-1] for x in letters} == {"0", "1", "2", "3"}


# --- replay -------------------------------------------------------------------------------------

NOW = AT + 60_000


def event_payload(event_id: str, **changes: object) -> str:
    record = {"event_id": event_id, "user_id": "u-1", "session_id": "s-1", "item_id": "i-1",
              "event_type": "view", "timestamp": AT, "device": "mobile", **changes}
    return json.dumps(record)


def seeded(directory: Path) -> DeadLetterQueue:
    """Two letters that pass today (rejected by a rule since lifted), three that still do not."""
    dlq = DeadLetterQueue(directory)
    lifted = "event_id: rejected by the old prefix rule"
    dlq.add([
        DeadLetter("api", "event", event_payload("ok-1"), lifted, AT),
        DeadLetter("api", "event", event_payload("bad-ts", timestamp=AT // 1000), "old reason", AT),
        DeadLetter("api", "event", "{not json", "not valid JSON: Expecting property name", AT),
    ])
    dlq.add_batch_file("events-1", [
        DeadLetter("landing:e.jsonl", "event", event_payload("ok-2"), lifted, AT),
        DeadLetter("landing:e.jsonl", "event", event_payload("bad-dev", device="phone"), lifted, AT),
    ])
    return dlq


def current_contract(kind: str, record: object) -> list[str]:
    from contracts.validation import validate

    return validate(kind, record, now_ms=NOW)  # type: ignore[arg-type]


def test_replay_moves_only_what_passes_now_and_accounts_for_every_letter(tmp_path: Path) -> None:
    dlq = seeded(tmp_path)
    before = dlq.count()
    landed: list[tuple[str, list[dict[str, object]]]] = []
    report = dlq.replay(current_contract, lambda kind, records: landed.append((kind, records)))
    assert [(k, [r["event_id"] for r in rs]) for k, rs in landed] == [("event", ["ok-1", "ok-2"])]
    assert (report.replayed, report.still_invalid, report.by_kind) == (2, 3, {"event": 2})
    assert before == report.replayed + report.still_invalid == 5
    assert report.by_reason == {"event": {"timestamp: looks like seconds": 1, "not valid JSON": 1,
                                          "device: unknown value": 1}}
    again = DeadLetterQueue(tmp_path)  # durable: it is the files
    assert again.count() == 3
    reasons = {x.payload: x.reason for x in again}
    assert reasons[event_payload("bad-ts", timestamp=AT // 1000)].startswith(
        "timestamp: looks like seconds")  # the reason the current contract gives
    assert reasons[event_payload("bad-dev", device="phone")].startswith("device: unknown value 'phone'")
    assert not list(tmp_path.glob("*/.*")), "no temporary files are left behind"
    second = again.replay(current_contract, lambda kind, records: landed.append((kind, records)))
    assert (second.replayed, second.still_invalid, len(landed)) == (0, 3, 1)


def test_replay_removes_files_left_empty(tmp_path: Path) -> None:
    dlq = DeadLetterQueue(tmp_path)
    dlq.add_batch_file("b", [DeadLetter("api", "event", event_payload("ok"), "old", AT)])
    assert dlq.replay(current_contract, lambda kind, records: None).replayed == 1
    assert list((tmp_path / "event").glob("*.jsonl")) == []


def test_a_failing_sink_leaves_the_queue_untouched(tmp_path: Path) -> None:
    dlq = seeded(tmp_path)
    files = {p: p.read_bytes() for p in tmp_path.glob("*/*.jsonl")}

    def broken_sink(kind: str, records: list[dict[str, object]]) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        dlq.replay(current_contract, broken_sink)
    assert {p: p.read_bytes() for p in tmp_path.glob("*/*.jsonl")} == files


def test_replay_only_the_kinds_asked_for_and_keeps_torn_lines(tmp_path: Path) -> None:
    dlq = seeded(tmp_path)
    dlq.add([DeadLetter("api", "item", json.dumps({"item_id": "i-9", "category": "c"}), "old", AT)])
    day_file = tmp_path / "event" / "2023-11-14.jsonl"
    with open(day_file, "a", encoding="utf-8") as fh:
        fh.write('{"source": "api", "kind": "ev')  # a writer died mid-line: not ours to drop
    report = dlq.replay(current_contract, lambda kind, records: None, kinds=["item"])
    assert (report.replayed, report.still_invalid, dlq.count("item"), dlq.count("event")) == (1, 0, 0, 5)
    dlq.replay(current_contract, lambda kind, records: None, kinds=["event"])
    assert day_file.read_bytes().endswith(b'{"source": "api", "kind": "ev')
    assert dlq.count("event") == 3


def test_replay_never_drops_letters_appended_while_it_rewrites(tmp_path: Path) -> None:
    dlq = seeded(tmp_path)  # 3 letters stay invalid
    script = (
        "import sys; from pathlib import Path; from contracts.dlq import DeadLetter, "
        "DeadLetterQueue\n"
        "q = DeadLetterQueue(Path(sys.argv[1]))\n"
        "for i in range(100):\n"
        f"    q.add([DeadLetter('api', 'event', '{{broken', 'r: rule', {AT}) for _ in range(3)])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=REPO) for _ in range(2)]
    replayed = 0
    while any(p.poll() is None for p in procs):
        replayed += dlq.replay(current_contract, lambda kind, records: None).replayed
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert replayed == 2
    assert dlq.count() == 3 + 2 * 100 * 3


def test_replay_keeps_a_quarantined_file_and_a_record_it_cannot_check(tmp_path: Path) -> None:
    """A quarantined file's letter is no record: replay keeps it with its reason. A record whose
    checking raises (here a validator that fails on it: no real one is known) is kept, with that
    as its reason, and the replay goes on."""
    dlq = DeadLetterQueue(tmp_path)
    file_letter = quarantined_file("event", "events/x.parquet", 123, "Could not read footer", AT)
    dlq.add_batch_file("events-run", [file_letter, DeadLetter("api", "event", event_payload("boom"), "old", AT),
                                      DeadLetter("api", "event", event_payload("ok"), "old", AT)])

    def validator(kind: str, record: object) -> list[str]:
        if isinstance(record, dict) and record.get("event_id") == "boom":
            raise RecursionError("maximum recursion depth exceeded")
        return current_contract(kind, record)

    landed: list[dict[str, object]] = []
    report = dlq.replay(validator, lambda kind, records: landed.extend(records))
    assert [r["event_id"] for r in landed] == ["ok"] and (report.replayed, report.still_invalid) == (1, 2)
    kept = {x.source: x for x in dlq.batch_entries("events-run")}
    assert kept[QUARANTINE + "events/x.parquet"] == file_letter
    assert file_letter.reason.startswith("file: could not be read (Could not read footer)")
    assert kept["api"].reason == "record: could not be processed (RecursionError: maximum recursion depth exceeded)"
    assert report.by_reason["event"] == {"file: could not be read": 1, "record: could not be processed": 1}
