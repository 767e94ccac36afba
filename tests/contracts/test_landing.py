"""`blink ingest PATH`: a user's own files are checked at once and landed; nothing is lost."""

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from blink.errors import BadRequest
from contracts.dlq import DeadLetterQueue
from contracts.landing import accept_file
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
    assert report.reasons == {"timestamp": 1}
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
