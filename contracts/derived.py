"""What other tools need to know about a contract, derived from its newest Avro schema.

- ``spark_ddl(kind)``: the columns Spark reads landing JSON with (jobs/ingest.py);
- ``arrow_schema(kind)``: the Arrow schema of landing Parquet files (tools/importers.py);
- ``table_checks(kind)``: what the data-quality suite demands of a lake table
  (jobs/expectations.py).

Type mapping: an enum is a string, a ``timestamp-millis`` stays a long of epoch milliseconds
(the lake has always stored it so), a ``["null", X]`` union is a nullable X. A new schema
version therefore changes ingest, the importers and the quality gate together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contracts.tables import KEYS
from contracts.validation import NON_NEGATIVE_FIELDS, Kind, fields

if TYPE_CHECKING:
    import pyarrow as pa

# Avro primitive -> Spark DDL type name.
_SPARK = {"string": "string", "long": "long", "int": "int", "double": "double", "float": "float",
          "boolean": "boolean", "bytes": "binary"}


@dataclass(frozen=True)
class TableChecks:
    """The contract's demands on a table of valid records of one kind."""

    key: str | None  # one row per value
    required: tuple[str, ...]  # neither nullable nor defaulted: the column is there, never null
    nullable: tuple[str, ...]  # may be null, so may also be absent (it reads as null)
    enums: dict[str, tuple[str, ...]]  # column -> allowed values
    timestamps: tuple[str, ...]  # epoch milliseconds
    floats: tuple[str, ...]
    non_negative: tuple[str, ...]


def spark_ddl(kind: Kind) -> str:
    """``"event_id string, user_id string, ..."``: every field of ``kind``, in schema order."""
    return ", ".join(f"{f.name} {_spark(f.main)}" for f in fields(kind))


def arrow_schema(kind: Kind) -> pa.Schema:
    """The Arrow schema of ``kind``: every field, in schema order.

    All columns are nullable, as Spark writes them: the contract, not the file, decides
    which values may be null.
    """
    import pyarrow as pa  # here, not at the top: serving and Spark workers import contracts

    return pa.schema([(f.name, _arrow(f.main)) for f in fields(kind)])


def table_checks(kind: Kind) -> TableChecks:
    """What the contract says about every row of a ``kind`` table, column by column."""
    compiled = fields(kind)
    return TableChecks(
        key=KEYS.get(kind),
        required=tuple(f.name for f in compiled if f.required),
        nullable=tuple(f.name for f in compiled if f.nullable),
        enums={f.name: f.symbols for f in compiled if f.symbols},
        timestamps=tuple(f.name for f in compiled if _logical(f.main) == "timestamp-millis"),
        floats=tuple(f.name for f in compiled if _base(f.main) in ("double", "float")),
        non_negative=tuple(f.name for f in compiled if f.name in NON_NEGATIVE_FIELDS),
    )


def _base(t: Any) -> str:
    """The Avro type name under any logical type or null union: ``"long"``, ``"enum"``..."""
    if isinstance(t, list):  # a nested ["null", X]: Spark and Arrow columns are nullable anyway
        (t,) = [branch for branch in t if branch != "null"]
    return t if isinstance(t, str) else _base(t["type"])


def _logical(t: Any) -> str | None:
    return t.get("logicalType") if isinstance(t, dict) else None


def _spark(t: Any) -> str:
    base = _base(t)
    if base == "enum":
        return "string"
    if base == "map":
        return f"map<string,{_spark(t['values'])}>"
    if base == "array":
        return f"array<{_spark(t['items'])}>"
    if base == "record":
        return "struct<" + ",".join(f"{f['name']}:{_spark(f['type'])}" for f in t["fields"]) + ">"
    if base in _SPARK:
        return _SPARK[base]
    raise ValueError(f"no Spark type for Avro type {t!r}; add it to contracts.derived")


def _arrow(t: Any) -> pa.DataType:
    import pyarrow as pa

    base = _base(t)
    primitives = {"string": pa.string(), "long": pa.int64(), "int": pa.int32(),
                  "double": pa.float64(), "float": pa.float32(), "boolean": pa.bool_(),
                  "bytes": pa.binary(), "enum": pa.string()}
    if base in primitives:
        return primitives[base]
    if base == "map":
        return pa.map_(pa.string(), _arrow(t["values"]))
    if base == "array":
        return pa.list_(_arrow(t["items"]))
    if base == "record":
        return pa.struct([(f["name"], _arrow(f["type"])) for f in t["fields"]])
    raise ValueError(f"no Arrow type for Avro type {t!r}; add it to contracts.derived")
