"""`blink ingest PATH`: a user's own files are checked at once and landed; nothing is lost.

Per row, never per file: each row is read in the contract's types, and one bad value
dead-letters one row."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from blink.errors import BadRequest
from contracts.dlq import DeadLetterQueue
from contracts.landing import accept_file, newest_timestamp
from tools.cli import cli

NOW = 1_790_000_000_000


def test_csv_with_numeric_ids_and_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(
        "event_id,user_id,session_id,item_id,event_type,timestamp,device,value\n"
        f"1,42,s1,100,view,{NOW},mobile,\n"
        f"2,,s2,101,purchase,{NOW + 1},desktop,9.5\n"
        f"3,42,s1,102,view,{NOW // 1000},mobile,\n")
    dlq = DeadLetterQueue(tmp_path / "dlq")
    report = accept_file(path, tmp_path / "landing", dlq)
    assert (report.table, report.rows, report.accepted, report.dead_lettered) == ("events", 3, 2, 1)
    assert report.reasons == {"timestamp: looks like seconds": 1}
    landed = pd.read_json(report.landing_file, lines=True, dtype={"user_id": "string", "event_id": "string"})
    assert list(landed["event_id"]) == ["1", "2"] and landed["user_id"].isna().tolist() == [False, True]
    assert "seconds" in next(iter(dlq.entries("event"))).reason


def test_items_jsonl_are_told_by_their_columns(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.jsonl"
    path.write_text('{"item_id": "a", "category": "books", "price": 3.5}\n{"item_id": "b", "category": "toys"}\n')
    report = accept_file(path, tmp_path / "landing", DeadLetterQueue(tmp_path / "dlq"))
    assert (report.table, report.accepted) == ("items", 2)


def test_unrecognisable_file_says_what_is_expected(tmp_path: Path) -> None:
    path = tmp_path / "what.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(BadRequest, match="events need event_id"):
        accept_file(path, tmp_path / "landing", DeadLetterQueue(tmp_path / "dlq"))


def test_cli_ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLINK_PATHS__VAR_DIR", str(tmp_path / "var"))
    path = tmp_path / "users.parquet"
    pd.DataFrame({"user_id": ["u1", "u\x01"], "country": ["GB", "DE"]}).to_parquet(path)
    result = CliRunner().invoke(cli, ["ingest", str(path)])
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "var" / "landing" / "users").glob("*.jsonl"))
    assert DeadLetterQueue(tmp_path / "var" / "dlq").count("user") == 1


HEADER = "event_id,user_id,session_id,item_id,event_type,timestamp,device,value,context\n"
ISO = datetime.fromtimestamp(NOW / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # == NOW


def landed(report_file: str | None) -> list[dict]:
    assert report_file is not None
    return [json.loads(line) for line in Path(report_file).read_text().splitlines()]


def test_csv_mixing_epoch_ms_and_iso_8601_keeps_every_valid_row(tmp_path: Path) -> None:
    """One ISO-8601 value among epoch-ms rows used to turn the column into text and
    dead-letter all of them; now each cell is read as the contract's type."""
    path = tmp_path / "mixed.csv"
    path.write_text(HEADER
                    + f"e1,u1,s1,i1,view,{NOW},mobile,,\n"
                    + f"e2,u1,s1,i2,click,{ISO},mobile,,\n"
                    + "e3,u1,s1,i3,view,2026-09-21T15:18:20+02:00,desktop,,\n"
                    + f"e4,,s2,i4,rating,{NOW + 4}.0,tv,4.5,\"{{\"\"page\"\": \"\"home\"\"}}\"\n"
                    + "e5,u1,s1,i5,view,2026-09-21T15:18:20,mobile,,\n"  # no zone
                    + "e6,u1,s1,i6,view,yesterday,mobile,,\n"
                    + "e7,u1,s1,i7,view,1790000000,mobile,,\n"  # seconds
                    + f"e8,u1,s1,i8,view,{NOW},mobile,lots,\n")  # value is not a number
    dlq = DeadLetterQueue(tmp_path / "dlq")
    report = accept_file(path, tmp_path / "landing", dlq)

    assert (report.rows, report.accepted, report.duplicates, report.dead_lettered) == (8, 4, 0, 4)
    rows = landed(report.landing_file)
    assert [r["event_id"] for r in rows] == ["e1", "e2", "e3", "e4"]
    e3 = int(datetime(2026, 9, 21, 13, 18, 20, tzinfo=UTC).timestamp() * 1000)
    assert [r["timestamp"] for r in rows] == [NOW, NOW, e3, NOW + 4]
    assert all(type(r["timestamp"]) is int for r in rows)
    assert rows[3]["context"] == {"page": "home"} and rows[3]["value"] == 4.5 and rows[3].get("user_id") is None
    letters = {json.loads(x.payload)["event_id"]: x.reason for x in dlq.entries("event")}
    assert set(letters) == {"e5", "e6", "e7", "e8"}
    assert "no time zone" in letters["e5"] and "ISO-8601" in letters["e6"]
    assert "looks like seconds" in letters["e7"] and letters["e8"].startswith("value: expected null or double")
    assert sum(report.reasons.values()) == 4


def test_iso_with_offset_is_the_same_instant(tmp_path: Path) -> None:
    path = tmp_path / "offsets.csv"
    path.write_text(HEADER + "a,u,s,i,view,2026-09-21T15:18:20+02:00,mobile,,\n"
                    + "b,u,s,i,view,2026-09-21T13:18:20Z,mobile,,\n")
    report = accept_file(path, tmp_path / "landing", DeadLetterQueue(tmp_path / "dlq"), "events")
    first, second = landed(report.landing_file)
    expected = int(datetime(2026, 9, 21, 13, 18, 20, tzinfo=UTC).timestamp() * 1000)
    assert first["timestamp"] == second["timestamp"] == expected


def test_json_lines_timestamps_stay_numbers_and_a_bad_line_is_dead_lettered_alone(tmp_path: Path) -> None:
    """pandas read a JSON-lines "timestamp" as dates, so every row was rejected; now each line
    is parsed on its own with json.loads."""
    path = tmp_path / "events.jsonl"
    good = {"event_id": "j1", "user_id": None, "session_id": "s", "item_id": "i", "event_type": "view",
            "timestamp": 1464739200000, "device": "tv"}
    path.write_text(json.dumps(good) + "\n"
                    + json.dumps({**good, "event_id": "j2", "timestamp": "2016-06-01T00:00:00+00:00"}) + "\n"
                    + "\n"
                    + '{"event_id": "j3", oops\n'
                    + json.dumps({**good, "event_id": 4, "user_id": 42}) + "\n")  # numeric ids: their text
    dlq = DeadLetterQueue(tmp_path / "dlq")
    report = accept_file(path, tmp_path / "landing", dlq)
    assert (report.rows, report.accepted, report.dead_lettered) == (4, 3, 1)
    rows = landed(report.landing_file)
    assert [(r["event_id"], r["timestamp"]) for r in rows] == [
        ("j1", 1464739200000), ("j2", 1464739200000), ("4", 1464739200000)]
    assert rows[2]["user_id"] == "42"
    (letter,) = dlq.entries("event")
    assert letter.payload == '{"event_id": "j3", oops' and letter.reason.startswith("not valid JSON")
    assert "(line 4)" in letter.reason
    assert report.reasons == {"not valid JSON": 1}


def test_parquet_with_iso_text_and_zoned_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    when = datetime(2026, 9, 21, 13, 18, 20, tzinfo=UTC)
    ms = int(when.timestamp() * 1000)
    table = pa.table({
        "event_id": ["p1", "p2", "p3"], "session_id": ["s"] * 3, "item_id": ["i"] * 3,
        "event_type": ["view"] * 3, "device": ["tv"] * 3,
        "timestamp": ["2026-09-21T13:18:20Z", "2026-09-21T15:18:20+02:00", "2026-09-21 13:18:20"],
        "context": pa.array([[("page", "home")], [], None], type=pa.map_(pa.string(), pa.string())),
    })
    pq.write_table(table, path)
    dlq = DeadLetterQueue(tmp_path / "dlq")
    report = accept_file(path, tmp_path / "landing", dlq)
    assert (report.accepted, report.dead_lettered) == (2, 1)
    rows = landed(report.landing_file)
    assert [r["timestamp"] for r in rows] == [ms, ms] and rows[0]["context"] == {"page": "home"}
    assert "no time zone" in next(iter(dlq.entries("event"))).reason
    zoned = tmp_path / "zoned.parquet"
    pq.write_table(table.set_column(5, "timestamp", pa.array([when] * 3, type=pa.timestamp("ms", tz="UTC"))), zoned)
    assert accept_file(zoned, tmp_path / "landing", dlq).accepted == 3


def test_duplicate_ids_in_a_file_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "dups.csv"
    path.write_text(HEADER + f"d1,u,s,i,view,{NOW},mobile,,\n" + f"d1,u,s,i,click,{NOW + 1},mobile,,\n"
                    + f"d2,u,s,i,view,{NOW},phone,,\n")
    report = accept_file(path, tmp_path / "landing", DeadLetterQueue(tmp_path / "dlq"))
    assert (report.rows, report.accepted, report.duplicates, report.dead_lettered) == (3, 1, 1, 1)
    assert [r["event_type"] for r in landed(report.landing_file)] == ["view"]  # the first event of an id


def test_reingesting_a_file_replaces_its_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "twice.csv"
    path.write_text(HEADER + f"r1,u,s,i,view,{NOW},mobile,,\n" + "r2,u,s,i,view,1790000000,mobile,,\n"
                    + f"r3,u,s,i,clik,{NOW},mobile,,\n")
    dlq = DeadLetterQueue(tmp_path / "dlq")
    first = accept_file(path, tmp_path / "landing", dlq)
    second = accept_file(path, tmp_path / "landing", dlq)
    assert (first.dead_lettered, second.dead_lettered, dlq.count()) == (2, 2, 2)
    assert (first.replaced_letters, second.replaced_letters) == (0, 2)
    assert first.landing_file == second.landing_file
    assert len(list((tmp_path / "landing" / "events").iterdir())) == 1
    copy = tmp_path / "copy.csv"  # the same content under another name is the same file
    copy.write_bytes(path.read_bytes())
    assert accept_file(copy, tmp_path / "landing", dlq).replaced_letters == 2 and dlq.count() == 2
    path.write_text(HEADER + f"r1,u,s,i,view,{NOW},mobile,,\n" + f"r2,u,s,i,view,{NOW},mobile,,\n"
                    + f"r3,u,s,i,clik,{NOW},mobile,,\n")  # the user fixed one row
    fixed = accept_file(path, tmp_path / "landing", dlq, untaken=lambda landing_file: True)
    assert (fixed.accepted, fixed.dead_lettered, fixed.replaced_letters) == (2, 1, 2)
    assert [json.loads(x.payload)["event_id"] for x in dlq.entries()] == ["r3"]  # the old version's went
    # The earlier version's landing file, which no run took yet, is replaced too.
    assert fixed.replaced_landing == [first.landing_file]
    assert sorted(p.name.split("-")[1] for p in (tmp_path / "landing" / "events").iterdir()) == ["copy", "twice"]
    path.write_text(path.read_text() + f"r4,u,s,i,view,{NOW},mobile,,\n")  # a run took the last version
    again = accept_file(path, tmp_path / "landing", dlq, untaken=lambda landing_file: False)
    assert again.replaced_landing == [] and Path(str(fixed.landing_file)).exists()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_default_run_date_sees_every_landing_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    suffix: str) -> None:
    """`blink ingest` lands JSON lines whatever it read; the run date must see them (and raw
    CSV, JSON-lines and Parquet landing files), ISO-8601 times included."""
    from blink import config
    from tools.cli import _default_logical_date

    monkeypatch.setenv("BLINK_PATHS__VAR_DIR", str(tmp_path / "var"))
    cfg = config.load()
    folder = cfg.layout.landing / "events"
    folder.mkdir(parents=True)
    frame = pd.DataFrame({"event_id": ["a", "b", "c"], "session_id": "s", "item_id": "i", "event_type": "view",
                          "device": "tv", "timestamp": [str(NOW - 7_200_000), "2026-09-21T15:18:20+02:00",
                                                         str(NOW // 1000)]})  # the last is seconds: ignored
    path = folder / f"mine{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({**r, "timestamp": int(r["timestamp"]) if r["timestamp"].isdigit()
                                            else r["timestamp"]}) + "\n" for r in frame.to_dict("records")))
    else:
        frame.to_parquet(path)
    # NOW is 2026-09-21T14:13:20Z: the newest plausible event is 13:18:20Z (the ISO one) -> 14:00
    assert _default_logical_date(cfg) == "2026-09-21T14:00:00+00:00"
    newest = int(datetime(2026, 9, 21, 13, 18, 20, tzinfo=UTC).timestamp() * 1000)
    assert newest_timestamp(folder, range(631_152_000_000, NOW + 1)) == newest


def test_default_run_date_after_blink_ingest_of_json_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from blink import config
    from tools.cli import _default_logical_date

    monkeypatch.setenv("BLINK_PATHS__VAR_DIR", str(tmp_path / "var"))
    source = tmp_path / "events.jsonl"
    source.write_text(json.dumps({"event_id": "x", "session_id": "s", "item_id": "i", "event_type": "view",
                                  "device": "tv", "timestamp": 1464739200000}) + "\n")
    assert CliRunner().invoke(cli, ["ingest", str(source)]).exit_code == 0
    assert _default_logical_date(config.load()) == "2016-06-01T00:00:00+00:00"


@pytest.mark.parametrize(("name", "content", "says"), [
    ("latin.csv", "event_id,timestamp\ncaf\xe9,1\n".encode("latin-1"), "not UTF-8 text"),
    ("broken.parquet", b"PAR1 not really", "not a readable Parquet file"),
])
def test_an_unreadable_file_is_a_clear_error(tmp_path: Path, name: str, content: bytes, says: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadRequest, match=says):
        accept_file(path, tmp_path / "landing", DeadLetterQueue(tmp_path / "dlq"))


def test_progress_is_reported_while_rows_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text(HEADER + "".join(f"m{n},u,s,i,view,{NOW + n},mobile,,\n" for n in range(12_000)))
    seen: list[tuple[int, int]] = []
    report = accept_file(path, tmp_path / "landing", DeadLetterQueue(tmp_path / "dlq"),
                         progress=lambda done, total: seen.append((done, total)))
    assert report.accepted == 12_000
    assert seen == [(5000, 12_000), (10_000, 12_000), (12_000, 12_000)]


def test_the_run_date_skips_landing_files_nobody_can_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Files the ingest task quarantines (truncated Parquet, not UTF-8, a CSV field over the csv
    module's limit) must not stop `blink run-dag` from choosing its date: each is skipped, logged."""
    from blink import config
    from tools.cli import _default_logical_date

    monkeypatch.setenv("BLINK_PATHS__VAR_DIR", str(tmp_path / "var"))
    cfg = config.load()
    folder = cfg.layout.landing / "events"
    folder.mkdir(parents=True)
    row = {"event_id": "a", "session_id": "s", "item_id": "i", "event_type": "view", "device": "tv",
           "timestamp": NOW - 7_200_000}
    (folder / "good.jsonl").write_text(json.dumps(row) + "\n" + "[" * 100_000 + "\n")  # one line nested too deep
    pd.DataFrame([row]).to_parquet(tmp_path / "whole.parquet")
    whole = (tmp_path / "whole.parquet").read_bytes()
    (folder / "truncated.parquet").write_bytes(whole[: len(whole) // 2])
    (folder / "latin1.jsonl").write_bytes(json.dumps({**row, "session_id": "ß"}).encode("latin-1") + b"\xff\n")
    (folder / "huge.csv").write_text("event_id,timestamp\n" + "x" * 200_000 + f",{NOW}\n")
    assert newest_timestamp(folder, range(631_152_000_000, NOW + 1)) == NOW - 7_200_000
    assert _default_logical_date(cfg) == "2026-09-21T13:00:00+00:00"
    skipped = " ".join(r.getMessage() for r in caplog.records if "skipped" in r.getMessage())
    assert all(name in skipped for name in ("truncated.parquet", "latin1.jsonl", "huge.csv")), skipped
