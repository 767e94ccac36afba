"""Accept a user's own file (Parquet, CSV or JSON lines) of events, items or users.

Each row is checked against the contract now, so the user hears at once what was wrong;
valid rows become a landing file the next DAG run ingests, invalid rows go to the
dead-letter queue with their reason. Accounting: rows read = accepted + dead-lettered.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from blink.errors import BadRequest
from contracts import intake
from contracts.derived import table_checks
from contracts.dlq import DeadLetterQueue
from contracts.tables import KIND_OF, TABLES
from contracts.validation import ID_FIELDS


@dataclass
class FileReport:
    path: str
    table: str
    rows: int
    accepted: int
    dead_lettered: int
    reasons: dict[str, int] = field(default_factory=dict)
    landing_file: str | None = None


def read(path: Path) -> pd.DataFrame:
    """Read by suffix; ids stay strings even when they look like numbers."""
    ids = {c: "string" for c in sorted(ID_FIELDS)}
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=ids, keep_default_na=True)
    if path.suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=True, dtype=ids)
    raise BadRequest(f"{path.name}: unsupported file type {path.suffix!r}; use .parquet, .csv or .jsonl")


def infer_table(frame: pd.DataFrame) -> str:
    cols = set(frame.columns)
    if "event_id" in cols or "event_type" in cols:
        return TABLES["event"]
    if "item_id" in cols and "category" in cols:
        return TABLES["item"]
    if "user_id" in cols:
        return TABLES["user"]
    raise BadRequest(f"cannot tell what the file holds from its columns {sorted(cols)}: events need "
                     "event_id, items need item_id and category, users need user_id (or pass --kind)")


def _clean(value: Any, is_time: bool) -> Any:
    """Missing is None; whole-number times read as floats (CSV with gaps) are ints again."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if is_time and isinstance(value, float) and value.is_integer():
        return int(value)
    if hasattr(value, "item"):  # numpy scalar -> Python
        return value.item()
    return value


def accept_file(path: Path, landing: Path, dlq: DeadLetterQueue, table: str | None = None) -> FileReport:
    """Check every row of ``path`` (a ``table``'s rows, default: told by the columns); land the
    valid ones under ``landing/<table>/``, dead-letter the others."""
    frame = read(path)
    table = table or infer_table(frame)
    kind = KIND_OF[table]
    times = set(table_checks(kind).timestamps)
    records = [{k: _clean(v, k in times) for k, v in raw.items()} for raw in frame.to_dict("records")]
    checked = intake.split(records, kind, f"file:{path.name}", int(time.time() * 1000))
    dlq.add(checked.letters)
    good = checked.valid
    reasons = Counter(r.problems[0].split(":")[0] for r in checked.rejected)  # by first field
    report = FileReport(str(path), table, len(frame), len(good), len(checked.rejected), dict(reasons))
    if good:
        digest = hashlib.sha1(path.read_bytes()).hexdigest()[:8]
        target = landing / table / f"file-{path.stem}-{digest}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(json.dumps(r, default=str) + "\n" for r in good))
        report.landing_file = str(target)
    return report
