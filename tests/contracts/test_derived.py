"""Spark DDL, Arrow schema and quality checks follow the newest Avro schema of each kind."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from contracts.derived import arrow_schema, spark_ddl, table_checks
from contracts.tables import KEYS, KIND_OF, TABLES
from contracts.validation import DEVICES, EVENT_TYPES, Kind, fields, schema

# The lake's column types: a new schema version may add columns, never change these.
LAKE_DDL = {
    "event": "event_id string, user_id string, session_id string, item_id string, event_type string, "
             "timestamp long, device string, value double, context map<string,string>, "
             "referrer string, price double",
    "item": "item_id string, category string, price double, created_at long, title string",
    "user": "user_id string, signup_at long, country string, attributes map<string,string>",
}


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_spark_ddl_keeps_the_lake_column_types(kind: Kind) -> None:
    assert spark_ddl(kind) == LAKE_DDL[kind]


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_arrow_schema_has_every_field_with_the_lake_types(kind: Kind) -> None:
    arrow = arrow_schema(kind)
    assert arrow.names == [f["name"] for f in schema(kind)["fields"]]
    spark_to_arrow = {"string": pa.string(), "long": pa.int64(), "double": pa.float64(),
                      "map<string,string>": pa.map_(pa.string(), pa.string())}
    for column in LAKE_DDL[kind].split(", "):
        name, spark_type = column.split(" ")
        assert arrow.field(name).type == spark_to_arrow[spark_type], name


def test_nested_types_map_too() -> None:
    assert "items array<struct<item_id:string,score:double>>" in spark_ddl("recommendation")
    items = arrow_schema("recommendation").field("items").type
    assert items == pa.list_(pa.struct([("item_id", pa.string()), ("score", pa.float64())]))


def test_event_checks_follow_the_contract() -> None:
    checks = table_checks("event")
    assert checks.required == ("event_id", "session_id", "event_type", "timestamp", "device")
    # Anonymous visitors: user_id may be null, so no check may demand it.
    assert "user_id" in checks.nullable and "user_id" not in checks.required
    assert checks.enums == {"event_type": EVENT_TYPES, "device": DEVICES}
    assert (checks.key, checks.timestamps) == ("event_id", ("timestamp",))
    assert checks.floats == ("value", "price") and checks.non_negative == ("price",)


def test_item_checks_follow_the_contract() -> None:
    checks = table_checks("item")
    assert (checks.key, checks.required, checks.enums) == ("item_id", ("item_id", "category"), {})
    assert checks.timestamps == ("created_at",) and checks.non_negative == ("price",)


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_one_table_per_kind_keyed_by_a_required_id(kind: Kind) -> None:
    assert KIND_OF[TABLES[kind]] == kind
    key = next(f for f in fields(kind) if f.name == KEYS[kind])
    assert key.required


def test_the_events_suite_demands_no_nullable_column_non_null() -> None:
    from jobs.expectations import events_suite, items_suite

    suites: list[tuple[Any, Kind]] = [(events_suite(), "event"), (items_suite(), "item")]
    for suite, kind in suites:
        not_null = {e.column for e in suite.expectations
                    if e.expectation_type == "expect_column_values_to_not_be_null" and not e.row_condition}
        assert not_null == set(table_checks(kind).required), kind
