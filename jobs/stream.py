"""Drain the live event stream into landing files, exactly once, crash-safe.

The checkpoint (the last stream id already in a landing file) lives beside the lake, not in
Redis. A drain starting at checkpoint C always writes the file ``stream-from-<C>.jsonl``
(atomically: temp file + rename) and only then advances the checkpoint, so:
- a crash before the rename leaves nothing; the re-run drains from C again;
- a crash after the rename but before the checkpoint: the re-run rewrites the same file with
  a superset (same name), so nothing is duplicated;
- the stream is trimmed only after the lake write succeeded, so nothing is lost.
Ingest then validates landing files into the lake and drops duplicate event ids.

No entry can stop the drain: the API appends one JSON line per event, but an entry another
writer added without the event field, or not UTF-8, is dead-lettered (batch
``stream-from-<C>``, replaced by a re-drain from the same checkpoint, so once) and the drain
goes on; a line break inside an entry becomes a space, so one entry stays one line (JSON
allows no raw line break inside a string, and between tokens a space means the same).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, cast

import redis

from blink.files import write_text
from blink.keys import EVENTS, Keys
from contracts.dlq import DeadLetter, DeadLetterQueue

PAGE = 10_000
FIELD = b"e"  # the entry's field holding the event as JSON (serving/event_log.py)
_LINE_BREAK = re.compile(r"[\r\n]")  # what Spark's text reader splits lines on


def checkpoint_path(lake: Path) -> Path:
    return lake / "_checkpoints" / "events_stream.json"


def drain(client: redis.Redis, keys: Keys, landing: Path, lake: Path, dlq: DeadLetterQueue) -> dict[str, Any]:
    """Copy stream entries after the checkpoint into one landing file (unreadable ones into the
    dead-letter queue); advance the checkpoint."""
    ckpt = checkpoint_path(lake)
    start = json.loads(ckpt.read_text())["last_id"] if ckpt.exists() else "0-0"
    stream = keys.global_(EVENTS)
    lines: list[str] = []
    letters: list[DeadLetter] = []
    now_ms = int(time.time() * 1000)
    last = start
    while True:
        page = client.xrange(stream, min=f"({last}", max="+", count=PAGE)
        if not page:
            break
        # redis-py types replies as bytes | str; this client does not decode, so they are bytes.
        for entry_id, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], page):
            last = entry_id.decode()
            line, problem = _line(fields)
            if problem is None:
                lines.append(line)
            else:
                letters.append(DeadLetter(source=f"stream:{last}", kind="event", payload=line,
                                          reason=problem, at_ms=now_ms))
    if last == start:
        return {"drained": 0, "checkpoint": start}
    stem = f"stream-from-{start.replace('-', '_')}"
    name = f"{stem}.jsonl" if lines else None
    if name is not None:
        write_text(landing / "events" / name, "\n".join(lines) + "\n")
    dlq.add_batch_file(stem, letters)  # before the checkpoint moves; a re-drain replaces it
    write_text(ckpt, json.dumps({"last_id": last, "file": name, "count": len(lines)}))
    return {"drained": len(lines), "dead_lettered": len(letters), "checkpoint": last, "file": name}


def _line(fields: dict[bytes, bytes]) -> tuple[str, str | None]:
    """An entry's event as one line of text, or its fields as text and why it is no event."""
    raw = fields.get(FIELD)
    if raw is None:
        shown = {k.decode(errors="backslashreplace"): v.decode(errors="backslashreplace") for k, v in fields.items()}
        return json.dumps(shown), f"stream entry: has no event field {FIELD.decode()!r} (written by another writer?)"
    try:
        return _LINE_BREAK.sub(" ", raw.decode()), None
    except UnicodeDecodeError as exc:
        return (raw.decode(errors="backslashreplace"),
                f"stream entry: not UTF-8 text ({exc.reason} at byte {exc.start})")


def trim(client: redis.Redis, keys: Keys, lake: Path) -> None:
    """Forget stream entries already safe in a landing file and the lake."""
    ckpt = checkpoint_path(lake)
    if ckpt.exists():
        client.xtrim(keys.global_(EVENTS), minid=json.loads(ckpt.read_text())["last_id"], approximate=False)
