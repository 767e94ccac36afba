"""``blink dlq``: count, list and replay the dead-letter queue (``<var>/dlq``).

Replay re-validates every letter against the current contract and writes the records that
pass as a JSON-lines landing file, ``<var>/landing/<table>/replay-<UTC time>.jsonl``, which
the next DAG run ingests like any other landing file (ingest drops ids it already has).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from blink import config as config_mod
from blink.files import replace_file
from blink.layout import Layout
from contracts.dlq import DeadLetterQueue
from contracts.tables import TABLES
from contracts.validation import KINDS, Kind, validate

PAYLOAD_CHARS = 60


def _layout() -> Layout:
    return config_mod.load().layout


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _current_contract(kind: str, record: Mapping[str, Any]) -> list[str]:
    return validate(cast(Kind, kind), record)


@click.group()
def dlq() -> None:
    """The dead-letter queue: records their contract rejected, with the reason and the time."""


@dlq.command()
def stats() -> None:
    """Letters per kind and problem ("field: rule"), and the total."""
    queue = DeadLetterQueue(_layout().dlq)
    console = Console()
    by_kind = queue.stats()
    if not by_kind:
        console.print(f"the dead-letter queue is empty ({queue.directory})")
        return
    table = Table("kind", "problem", "letters", title=f"dead letters in {queue.directory}",
                  caption="a letter with several problems counts under each of them")
    for kind, reasons in by_kind.items():
        for n, (reason, count) in enumerate(reasons.items()):
            table.add_row(kind if n == 0 else "", Text(reason), str(count))
        table.add_row("", Text(f"{kind} letters", style="italic"), str(queue.count(kind)), end_section=True)
    table.add_row("total", "", str(queue.count()), style="bold")
    console.print(table)


@dlq.command("list")
@click.option("--kind", type=click.Choice(KINDS), default=None, help="only letters of this contract kind")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="at most N letters")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per letter, payload in full")
def list_(kind: str | None, limit: int, as_json: bool) -> None:
    """Letters in file order (oldest day first): time, kind, source, reason, payload."""
    queue = DeadLetterQueue(_layout().dlq)
    letters = list(queue.entries(kind, limit))
    if as_json:
        for letter in letters:
            click.echo(json.dumps(asdict(letter)))
        return
    table = Table("at (UTC)", "kind", "source", "reason", "payload",
                  title=f"{len(letters)} of {queue.count(kind)} letters")
    for letter in letters:
        payload = letter.payload if len(letter.payload) <= PAYLOAD_CHARS \
            else letter.payload[:PAYLOAD_CHARS] + "..."
        table.add_row(_iso(letter.at_ms), letter.kind, Text(letter.source), Text(letter.reason), Text(payload))
    Console().print(table)


@dlq.command()
@click.option("--kind", type=click.Choice(sorted(TABLES)), default=None, help="only this kind (default: all)")
def replay(kind: str | None) -> None:
    """Re-validate letters against the current contract; land the ones that pass now.

    Run it after a fix (a rule relaxed, a producer's clock corrected): the records that pass
    are written to var/landing/<table>/replay-<time>.jsonl for the next DAG run and leave the
    queue; the others stay, with the reason the current contract gives.
    """
    layout = _layout()
    queue = DeadLetterQueue(layout.dlq)
    written: list[Path] = []

    def land(kind: str, records: list[dict[str, Any]]) -> None:
        folder = layout.landing / TABLES[cast(Kind, kind)]
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path, n = folder / f"replay-{stamp}.jsonl", 1
        while path.exists():  # same microsecond: never overwrite an earlier replay
            n += 1
            path = folder / f"replay-{stamp}-{n}.jsonl"
        replace_file(path, [(json.dumps(r) + "\n").encode("ascii") for r in records])
        written.append(path)

    report = queue.replay(_current_contract, land, kinds=[kind] if kind else sorted(TABLES))
    console = Console()
    console.print(f"replayed {report.replayed} letter(s), {report.still_invalid} still invalid")
    for path in written:
        console.print(Text(f"  landed {path} (the next DAG run ingests it)"))
    if report.by_reason:
        table = Table("kind", "still invalid because", "letters")
        for k, reasons in report.by_reason.items():
            for reason, count in reasons.items():
                table.add_row(k, Text(reason), str(count))
        console.print(table)
