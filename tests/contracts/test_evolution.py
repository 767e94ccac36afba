"""Schema evolution: every shipped version reads its predecessor's data; breaking changes fail."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any, cast

import fastavro
import pytest

from contracts.evolution import check_backward, round_trip, samples
from contracts.validation import KINDS, SCHEMA_DIR, Kind, schema, validate, versions


@pytest.mark.parametrize("kind", KINDS)
def test_every_shipped_kind_is_backward_compatible(kind: Kind) -> None:
    assert check_backward(kind) == []


def test_event_v2_reads_v1_data_and_validation_accepts_v1_records() -> None:
    assert versions("event")[-2:] == [1, 2]
    old, new = schema("event", 1), schema("event", 2)
    buffer = io.BytesIO()
    fastavro.writer(buffer, old, samples(old))
    buffer.seek(0)
    read = [cast(dict[str, Any], r) for r in fastavro.reader(buffer, reader_schema=new)]
    assert len(read) == 6  # one per event_type: every symbol was written and read
    assert all(r["referrer"] is None and r["price"] is None for r in read)
    v1_record = {"event_id": "e-1", "user_id": None, "session_id": "s-1", "item_id": "i-1",
                 "event_type": "view", "timestamp": 1_700_000_000_000, "device": "mobile"}
    assert validate("event", v1_record, now_ms=1_700_000_000_000) == []


def candidate(tmp_path: Path, kind: str, change: Any) -> Path:
    """Copy the shipped ``kind`` v1 to tmp_path and write a v2 made by ``change(fields)``."""
    shutil.copy(SCHEMA_DIR / f"{kind}.v1.avsc", tmp_path)
    raw = json.loads((SCHEMA_DIR / f"{kind}.v1.avsc").read_text())
    raw["fields"] = change(raw["fields"])
    (tmp_path / f"{kind}.v2.avsc").write_text(json.dumps(raw))
    return tmp_path


def field_type(fields: list[dict[str, Any]], name: str) -> Any:
    return next(f for f in fields if f["name"] == name)["type"]


def test_new_field_without_default_is_named(tmp_path: Path) -> None:
    directory = candidate(tmp_path, "event", lambda fs: [*fs, {"name": "tenant_id", "type": "string"}])
    (problem,) = check_backward("event", directory)
    assert problem.startswith("event v1 -> v2: field 'tenant_id' added without a default")
    assert '"default": null' in problem  # says how to fix it


def test_removed_enum_symbol_is_named(tmp_path: Path) -> None:
    def drop_rating(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
        symbols = field_type(fields, "event_type")["symbols"]
        symbols.remove("rating")
        return fields

    directory = candidate(tmp_path, "event", drop_rating)
    (problem,) = check_backward("event", directory)
    assert problem.startswith("event v1 -> v2: field 'event_type': enum symbol(s) rating removed")
    # fastavro's own schema resolution agrees: v1 data holding "rating" does not read
    failure = round_trip(schema("event", 1, directory), schema("event", 2, directory))
    assert failure is not None and "rating" in failure


def test_type_change_that_avro_cannot_promote_is_named(tmp_path: Path) -> None:
    def retype(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
        next(f for f in fields if f["name"] == "session_id")["type"] = "long"
        return fields

    directory = candidate(tmp_path, "event", retype)
    (problem,) = check_backward("event", directory)
    assert problem.startswith("event v1 -> v2: field 'session_id': type changed from string to long")


def test_promotions_pass_and_each_consecutive_pair_is_checked(tmp_path: Path) -> None:
    base = {"type": "record", "name": "Item", "namespace": "blink"}
    types = {1: "int", 2: ["null", "long"], 3: ["null", "double"], 4: "double"}  # 3 -> 4 breaks
    for version, stock in types.items():
        fields = [{"name": "item_id", "type": "string"}, {"name": "stock", "type": stock}]
        (tmp_path / f"item.v{version}.avsc").write_text(json.dumps({**base, "fields": fields}))
    assert check_backward("item", tmp_path) == [
        "item v3 -> v4: field 'stock': null no longer allowed (now double), but records written "
        'before may hold null; keep "null" in its type']


def test_a_field_added_with_a_default_and_a_removed_field_are_compatible(tmp_path: Path) -> None:
    def evolve(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = [f for f in fields if f["name"] != "title"]
        return [*kept, {"name": "brand", "type": ["null", "string"], "default": None}]

    assert check_backward("item", candidate(tmp_path, "item", evolve)) == []
