"""Durable, file-based dead-letter queue for records that break their contract.

Layout under the queue directory (one JSON object per line, one directory per kind)::

    <dir>/<kind>/<YYYY-MM-DD>.jsonl       appended by ``add`` (UTC day of ``at_ms``)
    <dir>/<kind>/batch-<name>.jsonl       replaced as a whole by ``add_batch_file``

Appends are one ``write()`` per line on an ``O_APPEND`` descriptor, so processes can append
concurrently without interleaving lines, and are fsynced before ``add`` returns. Batch files
let an idempotent job (Spark ingest, one file per interval) re-run without duplicating.
Each letter keeps the original payload, so ``replay`` can re-validate it after a fix and
rewrite the files it came from without the replayed lines (atomically, ``replace_file``).
Replay reads a payload as the door does today: a CSV row's cells (all text) in the
contract's types, ISO-8601 times as epoch milliseconds, so rows a stricter reader rejected
come back.

Appenders hold a shared lock on ``<dir>/.lock``; ``add_batch_file`` and ``replay`` hold it
exclusively, so a rewrite never drops a line appended while it was reading the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from blink.files import fsync_dir, replace_file
from contracts import cells
from contracts.validation import KINDS, Kind, normalize

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # no separators, no hidden files
_FIELD_RULE = re.compile(r"([^\s:;]+): ([^,(\d'\"]*)")  # "field: rule words" up to the details
_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class DeadLetter:
    """One rejected record: where it came from, what it was, why and when it was rejected."""

    source: str  # e.g. "landing:events.parquet", "api"
    kind: str  # contract kind: event, item, user, recommendation
    payload: str  # the original record as JSON text, byte for byte what was received
    reason: str  # the validation problems, joined by "; "
    at_ms: int  # when it was dead-lettered, epoch ms

    def to_line(self) -> bytes:
        """The letter as one JSON line (ASCII-escaped: payloads may hold lone surrogates)."""
        return (json.dumps(asdict(self), separators=(",", ":")) + "\n").encode("ascii")

    @classmethod
    def from_line(cls, line: str) -> DeadLetter:
        """Parse a line written by ``to_line``; keys added by later versions are ignored."""
        data = json.loads(line)
        return cls(**{k: data[k] for k in _KEYS})


_KEYS = tuple(f.name for f in fields(DeadLetter))
QUARANTINE = "quarantine:"  # the source of a letter that stands for a whole file no reader could open
QUARANTINED = "file: could not be read"  # its reason's "field: rule"


def quarantined_file(kind: str, where: str, size: int, why: str, at_ms: int) -> DeadLetter:
    """The letter of a landing file left out of a run because it could not be read at all
    (``where`` is ``<table>/<file name>``). Its payload names the file, which stays in place:
    it may be large and need not be text. ``replay`` keeps such letters as they are."""
    return DeadLetter(source=QUARANTINE + where, kind=kind, payload=json.dumps({"file": where, "bytes": size}),
                      reason=f"{QUARANTINED} ({why.replace(';', ',')}), fix it and land it again with `blink ingest`",
                      at_ms=at_ms)  # one "; "-separated problem, so it is grouped under one reason key

Validator = Callable[[str, Mapping[str, Any]], list[str]]  # (kind, record) -> problems
Sink = Callable[[str, list[dict[str, Any]]], None]  # (kind, now-valid records)


@dataclass
class ReplayReport:
    """What ``replay`` did: before = replayed + still_invalid (letters of the kinds replayed)."""

    replayed: int = 0  # handed to the sink and removed from the queue
    still_invalid: int = 0  # kept, with the reason the current contract gives
    by_reason: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> reason key -> n
    by_kind: dict[str, int] = field(default_factory=dict)  # kind -> replayed


def parse_payload(payload: str) -> tuple[dict[str, Any] | None, str | None]:
    """A letter's payload as a record, or ``(None, problem)`` when it is not a JSON object."""
    try:
        record = json.loads(payload)
    except ValueError as exc:
        return None, f"not valid JSON: {exc}"
    except RecursionError:  # the parser recurses per level: ~1000 levels of [[[... are enough
        return None, "not valid JSON: nested too deeply to read"
    if not isinstance(record, dict):
        return None, "a record must be a JSON object"
    return record, None


def reason_keys(reason: str) -> list[str]:
    """Group keys of a reason: ``"field: rule"`` per problem, with values and details cut off.

    ``"timestamp: looks like seconds (1700000000), send ..."`` -> ``"timestamp: looks like
    seconds"``; list indexes are folded (``items[3].score`` -> ``items[].score``).
    """
    keys: list[str] = []
    for problem in reason.split("; "):
        match = _FIELD_RULE.match(problem.strip())
        if match:
            key = f"{_INDEX.sub('[]', match[1])}: {match[2].strip()}".rstrip(": ")
        else:  # not a contract message, e.g. "not valid JSON: Expecting value ..."
            key = re.split(r"[:,(\d'\"]", problem, maxsplit=1)[0].strip() or problem
        key = key[:80]
        if key not in keys:
            keys.append(key)
    return keys


class DeadLetterQueue:
    """The dead-letter queue stored under ``directory`` (e.g. ``var/dlq``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def add(self, letters: Iterable[DeadLetter]) -> int:
        """Append letters to their kind's daily file; durable (fsynced) on return. Returns count."""
        groups: dict[Path, list[bytes]] = defaultdict(list)
        for letter in letters:
            day = datetime.fromtimestamp(letter.at_ms / 1000, UTC).strftime("%Y-%m-%d")
            groups[self._kind_dir(letter.kind) / f"{day}.jsonl"].append(letter.to_line())
        if groups:
            with self._lock(exclusive=False):
                self._append(groups)
        return sum(len(lines) for lines in groups.values())

    def _append(self, groups: dict[Path, list[bytes]]) -> None:
        for path, lines in groups.items():
            created = not path.exists()
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    _write_all(fd, b"\n")  # end a line torn by a crash, or ours would join it
                for line in lines:
                    _write_all(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_dir(path.parent)  # make the new file's directory entry durable too

    def add_batch_file(self, name: str, letters: Iterable[DeadLetter], supersedes: Iterable[str] = ()) -> int:
        """Write the letters of batch ``name`` as ``<kind>/batch-<name>.jsonl``, replacing any
        earlier run of the same batch (also when this run has no letters of a kind), and
        removing the batches named in ``supersedes`` (e.g. an earlier version of a file). Atomic
        per file: readers see the old or the new batch, never half of one. Returns count."""
        names = [name, *supersedes]
        for n in names:
            if not _SAFE_NAME.fullmatch(n):
                raise ValueError(f"batch name {n!r} must match {_SAFE_NAME.pattern}")
        groups: dict[str, list[bytes]] = defaultdict(list)
        for letter in letters:
            groups[letter.kind].append(letter.to_line())
        filename = f"batch-{name}.jsonl"
        with self._lock(exclusive=True):
            for kind, lines in groups.items():
                replace_file(self._kind_dir(kind) / filename, lines)
            for n in names:
                for stale in self.directory.glob(f"*/batch-{n}.jsonl"):
                    if n != name or stale.parent.name not in groups:
                        stale.unlink()  # nothing of this kind now, or superseded: drop the old letters
                        fsync_dir(stale.parent)
        return sum(len(lines) for lines in groups.values())

    def batch_names(self, prefix: str = "") -> list[str]:
        """Names of the batches (any kind) starting with ``prefix``, sorted, each once."""
        files = self.directory.glob(f"*/batch-{prefix}*.jsonl") if self.directory.is_dir() else []
        return sorted({p.name[len("batch-"):-len(".jsonl")] for p in files})

    def batch_entries(self, name: str) -> Iterator[DeadLetter]:
        """The letters of batch ``name`` (all kinds), e.g. ingest's ``events-<interval>``."""
        if not _SAFE_NAME.fullmatch(name):
            raise ValueError(f"batch name {name!r} must match {_SAFE_NAME.pattern}")
        for path in sorted(self.directory.glob(f"*/batch-{name}.jsonl")):
            for raw in _read_lines(path):
                letter = _letter_or_none(raw)
                if letter is not None:
                    yield letter

    def count_batch(self, name: str) -> int:
        """How many letters batch ``name`` holds (all kinds)."""
        return sum(sum(1 for line in _read_lines(p) if line.endswith(b"\n"))
                   for p in self.directory.glob(f"*/batch-{name}.jsonl"))

    def replay(self, validate_fn: Validator, sink: Sink, kinds: Iterable[str] | None = None) -> ReplayReport:
        """Re-validate every letter (of ``kinds``, default all) against the current contract.

        Per kind, the letters that now pass go to ``sink(kind, records)`` in one call, and only
        after it returns are they removed from the queue (each file rewritten atomically); a
        sink that raises leaves that kind's queue as it was. The others stay, their reason
        updated. At least once: a crash between the sink and the rewrite replays those letters
        again, so the sink's consumer must drop duplicate ids (ingest does).
        """
        report = ReplayReport()
        with self._lock(exclusive=True):
            chosen = sorted({p.parent.name for p in self._files(None)} if kinds is None else set(kinds))
            for kind in chosen:
                self._replay_kind(kind, validate_fn, sink, report)
        return report

    def _replay_kind(self, kind: str, validate_fn: Validator, sink: Sink, report: ReplayReport) -> None:
        records: list[dict[str, Any]] = []
        kept: dict[Path, list[bytes]] = {}
        changed: set[Path] = set()
        reasons: Counter[str] = Counter()
        still = 0
        for path in self._files(kind):
            kept[path] = []
            original = _read_lines(path)
            for raw in original:
                letter = _letter_or_none(raw)
                if letter is None:  # not ours to judge (torn or unreadable): keep it as it is
                    kept[path].append(raw)
                    continue
                if letter.source.startswith(QUARANTINE):  # a whole file, not a record: kept as it is
                    kept[path].append(raw)
                    reasons.update(reason_keys(letter.reason))
                    still += 1
                    continue
                record, errors = _judge(kind, letter, validate_fn)
                if record is not None and not errors:
                    records.append(record)
                    continue
                letter = replace(letter, reason="; ".join(errors))
                kept[path].append(letter.to_line())
                reasons.update(reason_keys(letter.reason))
                still += 1
            if kept[path] != original:
                changed.add(path)
        if records:
            sink(kind, records)
        for path in sorted(changed):
            if not kept[path]:
                path.unlink()
                fsync_dir(path.parent)
            else:
                replace_file(path, kept[path])
        report.replayed += len(records)
        report.still_invalid += still
        report.by_kind[kind] = len(records)
        if reasons:
            report.by_reason[kind] = dict(reasons.most_common())

    def entries(self, kind: str | None = None, limit: int | None = None) -> Iterator[DeadLetter]:
        """Letters in file order (per kind: daily files by date, then batch files)."""
        n = 0
        for path in self._files(kind):
            with open(path, encoding="utf-8") as fh:
                for number, line in enumerate(fh, 1):
                    if limit is not None and n >= limit:
                        return
                    if not line.endswith("\n"):  # torn tail of a crashed writer: never acked
                        log.warning("dlq: skipping incomplete last line %s:%d", path, number)
                        continue
                    try:
                        letter = DeadLetter.from_line(line)
                    except (ValueError, KeyError, TypeError) as exc:
                        log.warning("dlq: skipping unreadable line %s:%d: %s", path, number, exc)
                        continue
                    n += 1
                    yield letter

    def __iter__(self) -> Iterator[DeadLetter]:
        return self.entries()

    def count(self, kind: str | None = None) -> int:
        """How many letters are queued (of ``kind``, or all)."""
        return sum(1 for _ in self.entries(kind))

    def stats(self) -> dict[str, dict[str, int]]:
        """kind -> {"field: rule": letters with that problem}, most frequent first.

        A letter with several problems counts once under each of them, so the numbers of a
        kind can add up to more than ``count(kind)``.
        """
        counters: dict[str, Counter[str]] = defaultdict(Counter)
        for letter in self.entries():
            counters[letter.kind].update(reason_keys(letter.reason))
        return {kind: dict(c.most_common()) for kind, c in sorted(counters.items())}

    @contextlib.contextmanager
    def _lock(self, exclusive: bool) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _kind_dir(self, kind: str) -> Path:
        if not _SAFE_NAME.fullmatch(kind):
            raise ValueError(f"dead-letter kind {kind!r} must match {_SAFE_NAME.pattern}")
        path = self.directory / kind
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            fsync_dir(path.parent)
        return path

    def _files(self, kind: str | None) -> list[Path]:
        if kind is not None and not _SAFE_NAME.fullmatch(kind):
            raise ValueError(f"dead-letter kind {kind!r} must match {_SAFE_NAME.pattern}")
        if not self.directory.is_dir():
            return []
        dirs = [self.directory / kind] if kind else sorted(self.directory.iterdir())
        # Temporary files start with "." and do not end in .jsonl, so they are never read.
        return [p for d in dirs if d.is_dir() for p in sorted(d.glob("[!.]*.jsonl"))]


def _judge(kind: str, letter: DeadLetter, validate_fn: Validator) -> tuple[dict[str, Any] | None, list[str]]:
    """A letter's record as the door reads it today, and what the current contract says of it;
    a record whose checking raises is kept with that as its reason (replay goes on)."""
    record, problem = parse_payload(letter.payload)
    if record is None:
        return None, [str(problem)]
    try:
        record = _as_read(kind, record, letter.source)
        return record, validate_fn(kind, record)
    except Exception as exc:  # noqa: BLE001 - one record must not stop the replay; the reason says what happened
        return None, [f"record: could not be processed ({type(exc).__name__}: {str(exc)[:200]})"]


def _as_read(kind: str, record: dict[str, Any], source: str) -> dict[str, Any]:
    """A letter's record as the door reads it today: a CSV row's text cells in the contract's
    types (``contracts.cells``), times in epoch milliseconds (ISO-8601 converted). A kind
    without a contract is left as it is."""
    if kind not in KINDS:
        return record
    contract = cast(Kind, kind)
    if source.endswith(".csv"):
        record = cells.csv_row(contract, record)
    return dict(normalize(contract, record))


def _write_all(fd: int, data: bytes) -> None:
    # One write() per line keeps O_APPEND lines whole; loop only on a rare short write.
    while data:
        data = data[os.write(fd, data):]


def _read_lines(path: Path) -> list[bytes]:
    with open(path, "rb") as fh:
        return fh.readlines()


def _letter_or_none(raw: bytes) -> DeadLetter | None:
    if not raw.endswith(b"\n"):
        return None  # torn tail of a crashed writer, as ``entries`` sees it
    try:
        return DeadLetter.from_line(raw.decode("utf-8"))
    except (ValueError, KeyError, TypeError):
        return None


