"""A user's own data, as a new user brings it: `blink ingest` of CSV and JSON-lines files,
then a bare `blink run-dag` (no --date), on a shop whose sessions are mostly anonymous.

The real CLI in subprocesses, the real DAG through `airflow dags test`, a redis-server these
tests start. The events are the tiny synthetic set with nine sessions in ten made anonymous
(``user_id`` null, as the contract allows), half of them written as CSV with ISO-8601 times,
half as JSON lines with epoch milliseconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blink import config
from contracts.dlq import DeadLetterQueue
from tools import synth
from tools.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent


def test_ingest_csv_and_json_lines_then_a_bare_run_dag(tmp_path: Path, redis_server: RedisServer) -> None:
    var = tmp_path / "var"
    env = {**os.environ, "BLINK_ENV": "test", "BLINK_PATHS__VAR_DIR": str(var), "REDIS_URL": redis_server.url,
           "BLINK_REDIS__KEY_PREFIX": "owndata", "COLUMNS": "200"}
    ds = synth.generate("tiny", seed=11)
    sessions = ds.events["session_id"].drop_duplicates()
    anonymous = set(sessions[[n % 10 != 0 for n in range(len(sessions))]])
    events = ds.events.assign(user_id=ds.events["user_id"].where(~ds.events["session_id"].isin(anonymous), None))
    half = len(events) // 2
    csv_part = events.iloc[:half].assign(
        timestamp=lambda f: __import__("pandas").to_datetime(f["timestamp"], unit="ms", utc=True)
        .dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z")
    csv_part.to_csv(tmp_path / "events.csv", index=False)
    with open(tmp_path / "events.jsonl", "w") as fh:
        for record in events.iloc[half:].to_dict("records"):
            fh.write(json.dumps({k: v for k, v in record.items() if v is not None and v == v}, default=str) + "\n")
    ds.items.to_csv(tmp_path / "items.csv", index=False)
    ds.users.to_parquet(tmp_path / "users.parquet", index=False)

    for name in ("events.csv", "events.jsonl", "items.csv", "users.parquet"):
        done = subprocess.run([str(BIN / "blink"), "ingest", str(tmp_path / name)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and " 0 dead-lettered" in done.stderr, done.stderr
    assert DeadLetterQueue(var / "dlq").count() == 0

    done = subprocess.run([str(BIN / "blink"), "run-dag"], env=env, capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "recs_daily finished" in done.stderr  # the first run on a fresh var dir is the daily fit

    cfg = config.load(environ=env)
    import pandas as pd

    lake = pd.read_parquet(cfg.layout.table("events"))
    assert len(lake) == len(events)  # every row of both formats, nothing dead-lettered
    assert lake["user_id"].isna().mean() > 0.8
