"""Drain the live event stream into landing files, exactly once, crash-safe.

The checkpoint (the last stream id already in a landing file) lives beside the lake, not in
Redis. A drain starting at checkpoint C always writes the file ``stream-from-<C>.jsonl``
(atomically: temp file + rename) and only then advances the checkpoint, so:
- a crash before the rename leaves nothing; the re-run drains from C again;
- a crash after the rename but before the checkpoint: the re-run rewrites the same file with
  a superset (same name), so nothing is duplicated;
- the stream is trimmed only after the lake write succeeded, so nothing is lost.
Ingest then validates landing files into the lake and drops duplicate event ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import redis

from blink.files import write_text
from blink.keys import EVENTS, Keys

PAGE = 10_000


def checkpoint_path(lake: Path) -> Path:
    return lake / "_checkpoints" / "events_stream.json"


def drain(client: redis.Redis, keys: Keys, landing: Path, lake: Path) -> dict[str, Any]:
    """Copy stream entries after the checkpoint into one landing file; advance the checkpoint."""
    ckpt = checkpoint_path(lake)
    start = json.loads(ckpt.read_text())["last_id"] if ckpt.exists() else "0-0"
    stream = keys.global_(EVENTS)
    lines: list[str] = []
    last = start
    while True:
        page = client.xrange(stream, min=f"({last}", max="+", count=PAGE)
        if not page:
            break
        # redis-py types replies as bytes | str; this client does not decode, so they are bytes.
        for entry_id, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], page):
            lines.append(fields[b"e"].decode())
            last = entry_id.decode()
    if not lines:
        return {"drained": 0, "checkpoint": start}
    name = f"stream-from-{start.replace('-', '_')}.jsonl"
    write_text(landing / "events" / name, "\n".join(lines) + "\n")
    write_text(ckpt, json.dumps({"last_id": last, "file": name, "count": len(lines)}))
    return {"drained": len(lines), "checkpoint": last, "file": name}


def trim(client: redis.Redis, keys: Keys, lake: Path) -> None:
    """Forget stream entries already safe in a landing file and the lake."""
    ckpt = checkpoint_path(lake)
    if ckpt.exists():
        client.xtrim(keys.global_(EVENTS), minid=json.loads(ckpt.read_text())["last_id"], approximate=False)
