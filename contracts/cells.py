"""Values as files hold them, turned into the contract's types one value at a time.

A CSV cell is text whatever it holds, so each cell is read as the type of its field in the
contract (a ``long`` cell as an integer, a ``map`` cell as a JSON object...), never as a type
guessed for the whole column: one odd value cannot change how its neighbours are read. A value
that does not convert stays text, and the contract rejects that one row, saying why.

Files typed by their writer (JSON lines, Parquet) keep their types, with three repairs every
reader would make: numeric ids become their decimal text, a whole-number float in a time field
(a column with gaps, written by pandas) is an integer, and a Parquet map (a list of pairs) is a
mapping.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from contracts.validation import ID_FIELDS, Kind, fields

NULL_TEXT = frozenset({"", "null", "NULL"})  # an empty cell (or these) is a missing value
_INTEGER = re.compile(r"[+-]?\d+")


def _base(main: Any) -> str:
    if isinstance(main, str):
        return main
    if main.get("logicalType") == "timestamp-millis":
        return "timestamp"
    return str(main["type"])


@functools.cache
def field_types(kind: Kind) -> dict[str, str]:
    """Field name -> its type name: ``string``, ``enum``, ``long``, ``timestamp``, ``double``,
    ``map``..."""
    return {f.name: _base(f.main) for f in fields(kind)}


def from_text(kind: Kind, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of text cells (a CSV row) with each cell in its field's type. An empty cell is an
    omitted field (so a nullable one reads as null, a defaulted one as its default, a required
    one is reported missing); columns the contract does not know are kept as they are."""
    types = field_types(kind)
    out: dict[str, Any] = {}
    for name, value in row.items():
        if name in types and isinstance(value, str):
            if value.strip() in NULL_TEXT:
                continue
            value = cell(types[name], value)
        out[name] = value
    return out


def cell(type_name: str, text: str) -> Any:
    """One text cell as ``type_name``; text that does not convert is returned unchanged."""
    if text.strip() in NULL_TEXT:
        return None
    if type_name in ("long", "int", "timestamp"):
        return _integer(text)
    if type_name in ("double", "float"):
        try:
            return float(text)
        except ValueError:
            return text
    if type_name == "boolean":
        return {"true": True, "false": False}.get(text.strip().lower(), text)
    if type_name in ("map", "array", "record"):
        try:
            value = json.loads(text)
        except ValueError:
            return text
        return value if isinstance(value, dict | list) else text
    return text  # string, enum: the text itself (the id rules judge surrounding spaces)


def _integer(text: str) -> Any:
    stripped = text.strip()
    if _INTEGER.fullmatch(stripped):
        return int(stripped)
    try:
        number = float(stripped)  # "1796102325000.0" or "1.796102325e12", as spreadsheets write
    except ValueError:
        return text  # e.g. an ISO-8601 time: the contract converts or rejects it
    return int(number) if math.isfinite(number) and number.is_integer() else text


def typed(kind: Kind, record: Any) -> Any:
    """A record from a typed file (JSON lines, Parquet) with the repairs above."""
    if not isinstance(record, dict):
        return record
    types = field_types(kind)
    for name, value in record.items():
        base = types.get(name)
        if name in ID_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            record[name] = str(value)
        elif base == "timestamp" and isinstance(value, float) and value.is_integer():
            record[name] = int(value)
        elif base == "map" and isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
            record[name] = dict(value)
    return record


def csv_row(kind: Kind, record: dict[str, Any]) -> dict[str, Any]:
    """A CSV row however it was parsed (all text, or with types a reader guessed per column,
    nulls for empty cells, as Spark reads a CSV landing file) in the contract's types."""
    present = {name: value for name, value in record.items() if value is not None}
    return from_text(kind, typed(kind, present))
