"""One hostile request, or one broken landing file, cannot stop the batch layer (issue 12, item 3).

For real: `blink serve` (gunicorn) takes the issue's ~500-level nested event; the stream also
holds that event as an older server stored it (raw body, unknown field and all), and the
landing folder a truncated Parquet file and a line nested too deep to parse. Then `blink
run-dag` runs the whole DAG on tiny data and publishes a version: each bad input is a dead
letter with its reason, and nothing is read twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
import requests

from blink import config
from blink.keys import EVENTS, Keys
from blink.store import RedisStore
from contracts.dlq import QUARANTINE, DeadLetterQueue
from tests.tools.blink_cli import blink, env_for
from tools.redis_server import RedisServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PREFIX = "hostile"


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


def test_a_hostile_event_and_a_broken_file_then_the_dag_publishes(tmp_path: Path, redis_server: RedisServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    var = tmp_path / "var"
    env = env_for(var, REDIS_URL=redis_server.url, BLINK_REDIS__KEY_PREFIX=PREFIX)
    client = redis.Redis(port=redis_server.port)
    client.delete(Keys(PREFIX).global_(EVENTS))
    assert blink("generate", "--size", "tiny", env=env).returncode == 0
    now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000) - 3_600_000
    hostile = {"event_id": "hostile-api", "user_id": "u0000001", "session_id": "hostile-s", "item_id": "i000001",
               "event_type": "click", "timestamp": now, "device": "mobile", "colour": "red", "extra": nested(500)}

    port = free_port()
    assert blink("serve", "--daemon", "--port", str(port), env=env, timeout=180).returncode == 0
    try:
        url = f"http://127.0.0.1:{port}/v1/events"
        r = requests.post(url, json=hostile, timeout=10)
        assert r.status_code == 400 and "levels deep" in r.text  # refused at the door: nothing stored
        r = requests.post(url, json={k: v for k, v in hostile.items() if k != "extra"}, timeout=10)
        assert r.status_code == 202 and r.json()["dropped_fields"][0]["fields"] == ["colour"], r.text
    finally:
        blink("stop", env=env)
    # What an older server stored: the raw body, unknown fields and all (this stopped every ingest).
    client.xadd(Keys(PREFIX).global_(EVENTS), {"e": json.dumps({**hostile, "event_id": "hostile-stream"})})
    landing = var / "landing" / "events"
    whole = next(landing.glob("*.parquet")).read_bytes()
    (landing / "truncated.parquet").write_bytes(whole[: len(whole) // 3])
    (landing / "deep.jsonl").write_text("[" * 100_000 + "\n")

    done = blink("run-dag", env=env, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    assert RedisStore(client, Keys(PREFIX)).current_version() is not None  # published
    monkeypatch.setenv("BLINK_PATHS__VAR_DIR", str(var))
    cfg = config.load("test")
    lake = pd.read_parquet(cfg.layout.table("events"))
    assert {"hostile-stream", "hostile-api"} <= set(lake["event_id"])
    assert not {"colour", "extra"} & set(lake.columns)
    letters = list(DeadLetterQueue(cfg.layout.dlq).entries("event"))
    quarantined = [x for x in letters if x.source == QUARANTINE + "events/truncated.parquet"]
    assert len(quarantined) == 1 and quarantined[0].reason.startswith("file: could not be read")
    assert [x.reason for x in letters if x.source == "landing:deep.jsonl"] == [
        "not valid JSON: nested too deeply to read"]
    taken = json.loads((cfg.layout.lake / "_checkpoints" / "landing.json").read_text())
    assert "events/truncated.parquet" in taken and "events/deep.jsonl" in taken  # never read again

