"""Accept a user's own file (Parquet, CSV or JSON lines) of events, items or users.

Each row is checked against the contract now, so the user hears at once what was wrong;
valid rows become a landing file the next DAG run ingests, invalid rows go to the
dead-letter queue with their reason. Accounting: rows read = accepted + duplicates +
dead-lettered.

Per row, never per file: a row is read in the contract's types (``contracts.cells``: a CSV
cell as its field's type; JSON lines with ``json.loads``, one line at a time, so no reader
guesses a column's type and no timestamp turns into a date), and a row that cannot be read
or breaks the contract is dead-lettered alone. ISO-8601 times with a zone are converted to
epoch milliseconds (``contracts.validation.normalize``).

Idempotent: the landing file is named by the file's path and content, and the file's dead
letters are one DLQ batch named by its content too, replaced (not added) when the same file is
ingested again; a changed version of the same file replaces the letters of the earlier one and
its landing file, if no run has taken it yet.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blink.errors import BadRequest
from blink.files import write_text
from contracts import cells, intake
from contracts.dlq import DeadLetterQueue, parse_payload, reason_keys
from contracts.intake import Received
from contracts.tables import KEYS, KIND_OF, TABLES
from contracts.validation import Kind, timestamp_ms

SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")
log = logging.getLogger(__name__)


@dataclass
class FileReport:
    """What ``accept_file`` did: rows = accepted + duplicates + dead_lettered."""

    path: str
    table: str
    rows: int
    accepted: int
    dead_lettered: int
    duplicates: int = 0  # the same key again in the file (events: first kept; items, users: last)
    reasons: dict[str, int] = field(default_factory=dict)  # "field: rule" -> letters, as dlq stats
    landing_file: str | None = None
    replaced_letters: int = 0  # letters of an earlier ingest of this file, replaced by these
    replaced_landing: list[str] = field(default_factory=list)  # untaken landing files of earlier versions


@dataclass
class FileRows:
    """A file's rows, read in the contract's types of ``table``."""

    table: str
    rows: list[Received]


def read(path: Path, table: str | None = None) -> FileRows:
    """Read by suffix, each row on its own; ``table`` defaults to what the columns tell."""
    try:
        if path.suffix == ".parquet":
            return _read_parquet(path, table)
        if path.suffix == ".csv":
            return _read_csv(path, table)
        if path.suffix in (".jsonl", ".json"):
            return _read_json_lines(path, table)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "save it as UTF-8 and ingest it again") from None
    except csv.Error as exc:  # e.g. a field over the csv module's limit
        raise BadRequest(f"{path.name}: not a readable CSV file ({exc})") from None
    raise BadRequest(f"{path.name}: unsupported file type {path.suffix!r}; use .parquet, .csv or .jsonl")


def infer_table(columns: set[str]) -> str:
    if "event_id" in columns or "event_type" in columns:
        return TABLES["event"]
    if "item_id" in columns and "category" in columns:
        return TABLES["item"]
    if "user_id" in columns:
        return TABLES["user"]
    raise BadRequest(f"cannot tell what the file holds from its columns {sorted(columns)}: events need "
                     "event_id, items need item_id and category, users need user_id (or pass --kind)")


def _read_parquet(path: Path, table: str | None) -> FileRows:
    import pyarrow.parquet as pq  # here: serving imports contracts and never reads Parquet

    try:
        data = pq.read_table(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise BadRequest(f"{path.name}: not a readable Parquet file ({exc})") from None
    table = table or infer_table(set(data.column_names))
    kind = KIND_OF[table]
    # Parquet is typed by its writer; the payload of a rejected row is the row as JSON. A null
    # is an omitted field: a column cannot leave a row's field out, so a nullable field reads
    # as null and a defaulted one (an event's context) as its default.
    return FileRows(table, [Received(cells.typed(kind, {k: v for k, v in row.items() if v is not None}))
                            for row in data.to_pylist()])


def _read_csv(path: Path, table: str | None) -> FileRows:
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: spreadsheets write a BOM
        lines = list(csv.reader(fh))
    header = lines[0] if lines else []
    table = table or infer_table(set(header))
    kind = KIND_OF[table]
    rows = []
    for number, row in enumerate(lines[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # a blank line is not a row
        raw = dict(zip(header, row, strict=False))
        # The payload keeps the cells as text: a replay reads them as this reader does.
        payload = json.dumps(raw if len(row) <= len(header) else {**raw, "": row[len(header):]})
        if len(row) > len(header):
            problem = f"row: more cells than the header has ({len(row)}, not {len(header)}), line {number}"
            rows.append(Received(None, payload, problem))
        else:
            rows.append(Received(cells.from_text(kind, raw), payload))
    return FileRows(table, rows)


def _read_json_lines(path: Path, table: str | None) -> FileRows:
    parsed: list[tuple[str, dict[str, Any] | None, str | None]] = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            record, problem = parse_payload(text)
            parsed.append((text, record, None if problem is None else f"{problem} (line {number})"))
    columns = {name for _, record, _ in parsed if record for name in record}
    table = table or infer_table(columns)
    kind = KIND_OF[table]
    return FileRows(table, [Received(cells.typed(kind, record), text, problem) for text, record, problem in parsed])


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def _where(path: Path) -> str:
    """A short hash of the file's absolute path: which file this is, whatever it holds."""
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]


def _batch_name(dlq: DeadLetterQueue, table: str, path: Path, content: str) -> tuple[str, list[str]]:
    """The DLQ batch of this file's letters, and the batches it replaces.

    Named ``file-<table>-<path hash>-<content hash>``: the same content (under any name) is
    the same batch, replaced on a re-ingest; an earlier version of the same path is superseded.
    """
    where = _where(path)
    same_content = [n for n in dlq.batch_names(f"file-{table}-") if n.endswith(f"-{content}")]
    name = same_content[0] if same_content else f"file-{table}-{where}-{content}"
    earlier = [n for n in dlq.batch_names(f"file-{table}-{where}-") if n != name]
    return name, same_content[1:] + earlier


def _reporting(rows: list[Received], progress: Callable[[int, int], None], every: int = 5000) -> Iterator[Received]:
    for n, row in enumerate(rows, start=1):
        yield row
        if n % every == 0 or n == len(rows):
            progress(n, len(rows))


def _unique(records: list[Any], kind: Kind) -> list[Any]:
    """One row per key: the first event of an id (as ingest keeps it), the last item or user."""
    key = KEYS[kind]
    if kind == "event":
        seen: set[Any] = set()
        out = []
        for r in records:
            if r[key] not in seen:
                seen.add(r[key])
                out.append(r)
        return out
    return list({r[key]: r for r in records}.values())


def accept_file(path: Path, landing: Path, dlq: DeadLetterQueue, table: str | None = None,
                untaken: Callable[[Path], bool] | None = None,
                progress: Callable[[int, int], None] | None = None) -> FileReport:
    """Check every row of ``path`` (a ``table``'s rows, default: told by the columns); land the
    valid ones under ``landing/<table>/``, dead-letter the others (replacing the letters of an
    earlier ingest of the same file).

    ``untaken(landing_file)`` says whether no DAG run has taken a landing file yet: the landing
    files of earlier versions of this path that are still untaken are removed, so the next run
    does not ingest two versions of the same rows (in no defined order). Without it they stay.
    ``progress(done, total)`` is called as rows are checked (for a progress bar).
    """
    read_rows = read(path, table)
    table, kind = read_rows.table, KIND_OF[read_rows.table]
    rows = read_rows.rows if progress is None else _reporting(read_rows.rows, progress)
    checked = intake.split_received(rows, kind, f"file:{path.name}")
    content = _digest(path)
    batch, superseded = _batch_name(dlq, table, path, content)
    replaced = sum(dlq.count_batch(name) for name in [batch, *superseded])
    dlq.add_batch_file(batch, checked.letters, supersedes=superseded)
    reasons: Counter[str] = Counter()
    for letter in checked.letters:
        reasons.update(reason_keys(letter.reason))
    good = _unique(checked.valid, kind)
    report = FileReport(str(path), table, len(read_rows.rows), len(good), len(checked.rejected),
                        duplicates=len(checked.valid) - len(good), reasons=dict(reasons.most_common()),
                        replaced_letters=replaced)
    folder = landing / table
    target = folder / f"file-{path.stem}-{_where(path)}-{content}.jsonl"
    if good:
        folder.mkdir(parents=True, exist_ok=True)
        write_text(target, "".join(json.dumps(r, default=str) + "\n" for r in good))
        report.landing_file = str(target)
    if untaken is not None:
        for earlier in sorted(folder.glob(f"file-{glob.escape(path.stem)}-{_where(path)}-*.jsonl")):
            if earlier != target and untaken(earlier):
                earlier.unlink()
                report.replaced_landing.append(str(earlier))
    return report


# --- what the landing folder holds ------------------------------------------------------------


def event_times(path: Path) -> list[int]:
    """Every event time of a landing file that reads as epoch milliseconds (ISO-8601 converted
    as the contract converts it), unvalidated: for finding the data's span quickly."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        if "timestamp" not in pq.read_schema(path).names:
            return []
        column = pc.drop_null(pq.read_table(path, columns=["timestamp"]).column("timestamp"))
        if column.type.equals(pa.int64()):
            return column.to_pylist()  # the usual case: no per-value conversion
        values: list[Any] = column.to_pylist()
    else:
        values = [row.record.get("timestamp") for row in read(path, TABLES["event"]).rows
                  if isinstance(row.record, dict)]
    return [v for v in map(timestamp_ms, values) if type(v) is int]


def folder_event_times(folder: Path, plausible: range) -> list[int]:
    """The plausible event times (epoch ms within ``plausible``) of every landing file in
    ``folder``, whatever its format. A file that cannot be read is skipped, with a warning:
    the ingest task quarantines it, and it must not stop a run from starting."""
    out: list[int] = []
    for path in sorted(folder.glob("*")):
        if path.suffix in SUFFIXES and not path.name.startswith("."):
            try:
                times = event_times(path)
            except (BadRequest, OSError, ValueError, NotImplementedError) as exc:  # pyarrow's errors are these
                log.warning("landing file %s skipped: cannot be read (%s)", path, exc)
                continue
            out += [v for v in times if v in plausible]
    return out


def newest_timestamp(folder: Path, plausible: range) -> int | None:
    """The newest plausible event time in any landing file of ``folder``; None when none."""
    return max(folder_event_times(folder, plausible), default=None)
