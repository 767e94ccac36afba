"""The door every record comes through: validate, keep the valid, turn the rest into dead letters.

``split`` takes records already parsed (the API's JSON body, rows of a file); ``split_lines``
takes JSON text as it was received (landing files read by Spark) and keeps that text, byte for
byte, as the letter's payload. Either way a record is judged by ``contracts.validation`` only,
and nothing is lost: every input is either valid or exactly one letter. Writing the letters
is the caller's (``DeadLetterQueue.add``, or ``add_batch_file`` for an idempotent job).

No record can stop a batch: one whose checking raises (JSON nested too deep to read, a bug a
strange value finds) becomes a letter saying so (``record: could not be processed``), and the
rest go on. ``split_lines`` hands on a valid record in the contract's shape (``normalise``:
fields the contract does not define are dropped), so nothing it did not check travels further.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts import cells
from contracts.dlq import DeadLetter, parse_payload
from contracts.validation import Kind, normalise, normalize, validate

log = logging.getLogger(__name__)
UNPROCESSABLE = "record: could not be processed"  # the reason's "field: rule" (contracts.dlq.reason_keys)


@dataclass(frozen=True)
class Rejected:
    """One input that broke the contract."""

    index: int  # its position in the input
    record: Any  # as received
    problems: list[str]  # what ``validate`` said, each starting with "field: rule"
    letter: DeadLetter


@dataclass
class Split:
    """``split``'s answer: len(valid) + len(rejected) == number of inputs."""

    valid: list[Mapping[str, Any]] = field(default_factory=list)  # in input order, normalized
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def letters(self) -> list[DeadLetter]:
        return [r.letter for r in self.rejected]


@dataclass(frozen=True)
class Received:
    """One input as read from somewhere: the record parsed from it (None when it could not be
    parsed, ``problem`` says why) and its text as received, kept as a letter's payload
    (None: the record as JSON)."""

    record: Any
    payload: str | None = None
    problem: str | None = None


def split(records: Iterable[Any], kind: Kind, source: str, now_ms: int | None = None) -> Split:
    """Validate each record as a ``kind``; a rejected one becomes a letter from ``source``
    (e.g. ``"api"``, ``"file:mine.csv"``) whose payload is the record as JSON.

    ``now_ms`` (epoch ms, default now) bounds timestamps and stamps the letters: one value per
    batch, so the whole batch is judged by the same clock.
    """
    return split_received((Received(r) for r in records), kind, source, now_ms)


def split_received(rows: Iterable[Received], kind: Kind, source: str, now_ms: int | None = None) -> Split:
    """``split`` for inputs whose payload is their text as received (a CSV row's cells, a JSON
    line): an unparsable one is rejected alone, with its ``problem``."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    out = Split()
    for index, row in enumerate(rows):
        if row.problem is not None:
            problems = [row.problem]
        else:
            record, problems = _judge(kind, row.record, now)
            if not problems:
                out.valid.append(record)
                continue
        # default=str: a rejected record may hold what JSON cannot (a date, bytes); keep it readable.
        payload = row.payload if row.payload is not None else json.dumps(row.record, default=str)
        letter = _letter(source, kind, payload, problems, now)
        out.rejected.append(Rejected(index, row.record, problems, letter))
    return out


def split_lines(lines: Iterable[tuple[str, str]], kind: Kind, now_ms: int) -> Iterator[dict[str, Any] | DeadLetter]:
    """For each ``(source, JSON text)``: the record when it is valid, else its dead letter.
    A row of a CSV file (``source`` ending in ``.csv``) is read cell by cell in the contract's
    types (``contracts.cells``), as ``blink ingest`` reads it.

    A generator, so a Spark partition streams through it (``rdd.mapPartitions``).
    """
    for source, text in lines:
        record, problem = parse_payload(text)
        if record is None:
            yield _letter(source, kind, text, [str(problem)], now_ms)
            continue
        record, problems = _judge(kind, record, now_ms, csv=source.endswith(".csv"))
        if problems:
            yield _letter(source, kind, text, problems, now_ms)
        else:
            yield normalise(kind, record)


def _judge(kind: Kind, record: Any, now_ms: int, csv: bool = False) -> tuple[Any, list[str]]:
    """The record with its times in epoch ms (a ``csv`` row's cells read in the contract's types
    first) and its problems; a record whose checking raises has that as its one problem, so it
    is dead-lettered instead of failing the batch that holds it."""
    try:
        if csv:
            record = cells.csv_row(kind, record)  # CSV cells are text whatever a reader guessed
        record = normalize(kind, record)
        return record, validate(kind, record, now_ms=now_ms)  # also says so when it is not a mapping
    except Exception as exc:  # noqa: BLE001 - anything: the record is dead-lettered with the error, and logged
        log.warning("a %s record could not be processed: %s: %s", kind, type(exc).__name__, exc)
        return record, [f"{UNPROCESSABLE} ({type(exc).__name__}: {str(exc)[:200]})"]


def _letter(source: str, kind: Kind, payload: str, problems: list[str], now_ms: int) -> DeadLetter:
    return DeadLetter(source=source, kind=kind, payload=payload, reason="; ".join(problems), at_ms=now_ms)
