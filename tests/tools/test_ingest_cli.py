"""`blink ingest` as a user runs it: the real CLI in a subprocess, a temporary var dir.

Per row, never per file (one ISO-8601 time among epoch-ms rows, one bad value), and idempotent:
the same file ingested twice leaves the dead-letter queue as it was, and the counts printed
add up and equal `blink dlq stats`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # starts the `blink` CLI as a process
BIN = Path(sys.executable).parent


def blink(var: Path, *args: str) -> str:
    env = {**os.environ, "BLINK_PATHS__VAR_DIR": str(var), "COLUMNS": "200"}
    done = subprocess.run([str(BIN / "blink"), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def counts(out: str) -> tuple[int, int, int, int]:
    m = re.search(r"(\d+) rows = (\d+) accepted \+ (\d+) duplicates \+ (\d+) dead-lettered", out)
    assert m, out
    rows, accepted, duplicates, dead = (int(g) for g in m.groups())
    assert rows == accepted + duplicates + dead
    return rows, accepted, duplicates, dead


def test_ingest_mixed_timestamps_twice_then_dlq_stats_and_replay(tmp_path: Path) -> None:
    var = tmp_path / "var"
    now = int(time.time() * 1000) - 3_600_000
    iso = datetime.fromtimestamp(now / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    path = tmp_path / "shop.csv"
    path.write_text(
        "event_id,user_id,session_id,item_id,event_type,timestamp,device\n"
        + "".join(f"e{n},u{n % 3},s{n % 2},i{n},view,{now + n},mobile\n" for n in range(6))
        + f"e6,,s1,i6,click,{iso},desktop\n"  # ISO-8601 among epoch ms, an anonymous visitor
        + "e7,u1,s1,i7,view,2026-01-01T10:00:00,mobile\n"  # no zone: this row alone is rejected
        + f"e0,u0,s0,i0,view,{now},mobile\n")  # the same event id again
    first = blink(var, "ingest", str(path))
    assert counts(first) == (9, 7, 1, 1)
    assert "  1 × timestamp: no time zone" in first
    second = blink(var, "ingest", str(path))
    assert counts(second) == (9, 7, 1, 1)
    assert "its 1 earlier dead letters were replaced by these, not added" in second
    stats = blink(var, "dlq", "stats")
    assert re.search(r"total\W+1\b", stats), stats  # not 2: the re-ingest replaced its letter
    (landed,) = (var / "landing" / "events").glob("file-shop-*.jsonl")
    rows = [json.loads(line) for line in landed.read_text().splitlines()]
    assert len(rows) == 7 and all(type(r["timestamp"]) is int for r in rows)
    assert rows[-1]["timestamp"] == now // 1000 * 1000  # the ISO row, to the second it gave

    # The user fixes the row in the file and ingests it again: its letter goes, the row lands.
    path.write_text(path.read_text().replace("2026-01-01T10:00:00", iso))
    fixed = blink(var, "ingest", str(path))
    assert counts(fixed) == (9, 8, 1, 0)
    assert "the dead-letter queue is empty" in blink(var, "dlq", "stats")
    # No run took the earlier version yet: its landing file goes, the next run sees one version.
    assert f"removed {landed}: an earlier version of this file no run has ingested yet" in fixed
    (now,) = (var / "landing" / "events").glob("file-shop-*.jsonl")
    assert len(now.read_text().splitlines()) == 8
