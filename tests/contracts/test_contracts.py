"""Contract rules: one test per rule, each failing if the rule breaks."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import fastavro
import pytest

from blink.errors import ContractViolation
from contracts.docs import EXAMPLES, render
from contracts.validation import (
    DEVICES,
    EVENT_TYPES,
    KINDS,
    SCHEMA_DIR,
    check,
    normalize,
    rules,
    schema,
    validate,
    versions,
)

NOW = 1_700_000_000_000  # 2023-11-14T22:13:20Z
DAY = 86_400_000
REPO = Path(__file__).resolve().parents[2]


def event(**changes: Any) -> dict[str, Any]:
    """A valid event; keyword arguments override fields (value ``...`` removes the field)."""
    record = {"event_id": "e-1", "user_id": "u-1", "session_id": "s-1", "item_id": "i-1",
              "event_type": "view", "timestamp": NOW - 60_000, "device": "mobile",
              "value": None, "context": {"page": "home"}}
    record.update(changes)
    return {k: v for k, v in record.items() if v is not ...}


def errors(record: dict[str, Any], kind: str = "event") -> list[str]:
    return validate(kind, record, now_ms=NOW)  # type: ignore[arg-type]


def only_error(record: dict[str, Any], kind: str = "event") -> str:
    found = errors(record, kind)
    assert len(found) == 1, found
    return found[0]


# --- schemas ------------------------------------------------------------------------------


V1_EVENT_FIELDS = ["event_id", "user_id", "session_id", "item_id", "event_type", "timestamp", "device",
                   "value", "context"]


@pytest.mark.parametrize(("kind", "name", "fields"), [
    ("event", "blink.Event", [*V1_EVENT_FIELDS, "referrer", "price"]),  # v2 added two optional fields
    ("item", "blink.Item", ["item_id", "category", "price", "created_at", "title"]),
    ("user", "blink.User", ["user_id", "signup_at", "country", "attributes"]),
    ("recommendation", "blink.Recommendation",
     ["user_id", "items", "path", "reason", "model_version"]),
])
def test_schema_files_match_the_contract(kind: str, name: str, fields: list[str]) -> None:
    parsed = schema(kind)  # type: ignore[arg-type]
    assert parsed["name"] == name
    assert [f["name"] for f in parsed["fields"]] == fields
    assert schema(kind) is parsed, "schemas are parsed once and cached"
    assert schema(kind, 1)["name"] == name  # type: ignore[arg-type]
    if kind == "event":
        assert [f["name"] for f in schema("event", 1)["fields"]] == V1_EVENT_FIELDS
    assert json.loads((SCHEMA_DIR / f"{kind}.v1.avsc").read_text())["namespace"] == "blink"


def test_unknown_schema_version_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no event schema v99"):
        schema("event", 99)
    with pytest.raises(ValueError, match="add event.v1.avsc"):
        schema("event", directory=tmp_path)


def test_schemas_load_from_another_directory(tmp_path: Path) -> None:
    (tmp_path / "user.v3.avsc").write_text((SCHEMA_DIR / "user.v1.avsc").read_text())
    assert versions("user", tmp_path) == [3]
    assert schema("user", directory=tmp_path)["name"] == "blink.User"


def test_enum_tuples_are_read_from_the_schema() -> None:
    raw = json.loads((SCHEMA_DIR / "event.v1.avsc").read_text())
    types = {f["name"]: f["type"] for f in raw["fields"]}
    assert EVENT_TYPES == tuple(types["event_type"]["symbols"])
    assert DEVICES == tuple(types["device"]["symbols"])


def test_checked_event_is_writable_and_readable_with_its_schema() -> None:
    record = check("event", event(), now_ms=NOW)
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema("event"), [record])
    buffer.seek(0)
    (back,) = [cast(dict[str, Any], r) for r in fastavro.reader(buffer)]
    assert back["timestamp"] == datetime.fromtimestamp(record["timestamp"] / 1000, UTC)
    assert {k: v for k, v in back.items() if k != "timestamp"} == \
        {k: v for k, v in record.items() if k != "timestamp"}


# --- events: valid ------------------------------------------------------------------------


@pytest.mark.parametrize("record", [
    event(),
    event(user_id=None),  # anonymous
    event(user_id=..., value=..., context=...),  # omitted nullable/defaulted fields
    event(event_type="search", item_id=None, context={"query": "red shoes"}),
    event(event_type="search", item_id=...),
    event(event_type="rating", value=0), event(event_type="rating", value=10.0),
    event(event_type="purchase", value=19.99),
    event(timestamp=NOW + DAY - 1),  # clocks may be a little ahead
    event(timestamp=631_152_000_000),  # 1990-01-01, the lower bound
    event(event_id="x" * 128, session_id="ünïcödé-✓"),
])
def test_valid_events_pass(record: dict[str, Any]) -> None:
    assert errors(record) == []


def test_check_normalizes_and_raises_with_all_problems() -> None:
    normalized = check("event", event(user_id=..., value=..., context=..., extra="x"), now_ms=NOW)
    assert list(normalized) == [f["name"] for f in schema("event")["fields"]]
    assert normalized["user_id"] is None and normalized["value"] is None
    assert normalized["context"] == {}
    with pytest.raises(ContractViolation) as caught:
        check("event", event(event_type="clik", timestamp=NOW // 1000), now_ms=NOW)
    assert caught.value.status == 400
    assert [e.split(":")[0] for e in caught.value.errors] == ["timestamp", "event_type"]


# --- events: timestamps ---------------------------------------------------------------------


@pytest.mark.parametrize(("timestamp", "unit", "fix"), [
    (NOW // 1000, "seconds", "multiply by 1000"),
    (NOW * 1000, "microseconds", "divide by 1000"),
    (NOW * 1_000_000, "nanoseconds", "divide by 1_000_000"),
])
def test_timestamp_in_wrong_unit_names_the_unit(timestamp: int, unit: str, fix: str) -> None:
    message = only_error(event(timestamp=timestamp))
    assert message.startswith(f"timestamp: looks like {unit}")
    assert fix in message


def test_timestamp_too_far_in_the_future_shows_the_date() -> None:
    message = only_error(event(timestamp=NOW + 2 * DAY))
    assert message.startswith("timestamp: too far in the future")
    assert "2023-11-16T22:13:20Z" in message


def test_timestamp_before_1990_shows_the_date() -> None:
    message = only_error(event(timestamp=631_152_000_000 - 1))
    assert message.startswith("timestamp: too old")
    assert "1989-12-31T23:59:59.999000Z" in message


@pytest.mark.parametrize("timestamp", [1.7e12, True, None])
def test_timestamp_must_be_an_integer(timestamp: Any) -> None:
    message = only_error(event(timestamp=timestamp))
    assert message.startswith("timestamp:")
    assert type(timestamp).__name__ in message or "null" in message


def test_timestamp_as_text_of_digits_says_send_a_number() -> None:
    message = only_error(event(timestamp="1700000000000"))
    assert message == ("timestamp: expected epoch milliseconds as a number, got the text "
                       "'1700000000000' (send it without quotes)")


@pytest.mark.parametrize(("text", "ms"), [
    ("2023-11-14T22:12:20Z", NOW - 60_000),
    ("2023-11-14T22:12:20.000+00:00", NOW - 60_000),
    ("2023-11-14T23:12:20+01:00", NOW - 60_000),  # an offset: the same instant
    ("2023-11-14 17:12:20-0500", NOW - 60_000),
    ("2023-11-14T22:12:20.123456Z", NOW - 60_000 + 123),  # below a millisecond is cut
])
def test_iso_8601_with_a_zone_is_a_timestamp_in_epoch_ms(text: str, ms: int) -> None:
    assert errors(event(timestamp=text)) == []
    assert check("event", event(timestamp=text), now_ms=NOW)["timestamp"] == ms
    assert normalize("event", event(timestamp=text))["timestamp"] == ms
    item = {"item_id": "i-1", "category": "c", "price": None, "created_at": text, "title": None}
    assert check("item", item, now_ms=NOW)["created_at"] == ms  # every timestamp field, not only events'


def test_normalize_leaves_a_valid_record_untouched() -> None:
    record = event()
    assert normalize("event", record) is record


@pytest.mark.parametrize(("text", "says"), [
    ("2023-11-14T22:12:20", "no time zone, add Z for UTC or an offset like +02:00"),
    ("2023-11-14", "no time zone"),
    ("yesterday", "expected epoch milliseconds (an integer) or an ISO-8601 time with a zone"),
    ("2023-11-17T00:00:00Z", "too far in the future"),  # converted first, then the same rules
    ("1989-12-31T23:59:59Z", "too old"),
])
def test_iso_8601_without_a_zone_or_unreadable_is_rejected_with_the_fix(text: str, says: str) -> None:
    message = only_error(event(timestamp=text))
    assert message.startswith("timestamp: ") and says in message, message


def test_a_datetime_needs_a_zone() -> None:
    aware = datetime.fromtimestamp((NOW - 60_000) / 1000, UTC)
    assert check("event", event(timestamp=aware), now_ms=NOW)["timestamp"] == NOW - 60_000
    assert "without a zone" in only_error(event(timestamp=aware.replace(tzinfo=None)))


# --- events: enums, ids, required fields ----------------------------------------------------


@pytest.mark.parametrize(("field", "allowed"), [("event_type", EVENT_TYPES), ("device", DEVICES)])
def test_unknown_enum_value_lists_the_allowed_values(field: str, allowed: tuple[str, ...]) -> None:
    message = only_error(event(**{field: "clik"}))
    assert message.startswith(f"{field}: unknown value 'clik'")
    assert all(symbol in message for symbol in allowed)


@pytest.mark.parametrize("field", ["event_id", "user_id", "session_id", "item_id"])
@pytest.mark.parametrize(("bad", "rule"), [
    ("s\x00broken", "control character (U+0000"),
    ("tab\there", "control character (U+0009"),
    ("del\x7f", "control character (U+007F"),
    ("nel\x85", "control character (U+0085"),  # C1 controls are Cc too
    ("x" * 129, "too long (129 characters)"),
    ("", "must not be empty"),
    (" padded", "leading or trailing whitespace"),
])
def test_bad_ids_are_rejected(field: str, bad: str, rule: str) -> None:
    message = only_error(event(**{field: bad}))
    assert message.startswith(f"{field}: ")
    assert rule in message


@pytest.mark.parametrize("field", ["event_id", "session_id", "event_type", "timestamp", "device"])
def test_missing_required_field(field: str) -> None:
    assert only_error(event(**{field: ...})) == f"{field}: required field is missing"


def test_null_in_a_required_field_is_named() -> None:
    assert only_error(event(session_id=None)) == "session_id: must not be null, expected string"


@pytest.mark.parametrize("event_type", [t for t in EVENT_TYPES if t != "search"])
def test_null_item_id_only_for_search(event_type: str) -> None:
    value = 5 if event_type == "rating" else None
    message = only_error(event(event_type=event_type, item_id=None, value=value))
    assert message.startswith("item_id: null is only allowed for event_type search")


# --- events: values ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "rule"), [
    (-0.5, "rating out of range"), (10.5, "rating out of range"), (None, "rating needs a value"),
])
def test_rating_value_within_0_and_10(value: Any, rule: str) -> None:
    assert only_error(event(event_type="rating", value=value)).startswith(f"value: {rule}")


@pytest.mark.parametrize(("changes", "expected"), [
    ({"value": True}, "value: expected null or double, got bool True"),
    ({"value": float("nan")}, "value: must be a finite number"),
    ({"value": "3"}, "value: expected null or double, got str '3'"),
    ({"context": {"page": 1}}, "context: expected map of string to string"),
    ({"item_id": 42}, "item_id: expected null or string, got int 42"),
])
def test_wrong_types_name_field_and_expected_type(changes: dict[str, Any], expected: str) -> None:
    assert only_error(event(**changes)).startswith(expected)


def test_all_problems_are_reported_at_once() -> None:
    found = errors(event(event_id="", device="phone", timestamp=NOW * 1000))
    assert [e.split(":")[0] for e in found] == ["event_id", "timestamp", "device"]


def test_not_a_mapping() -> None:
    assert only_error([1, 2], "event").startswith("event: expected a mapping")  # type: ignore[arg-type]


# --- items, users, recommendations ----------------------------------------------------------


def test_item_rules() -> None:
    item = {"item_id": "i-1", "category": "shoes", "price": 59.0, "created_at": NOW - DAY,
            "title": "Red shoes"}
    assert errors(item, "item") == []
    assert errors({"item_id": "i-2", "category": "shoes"}, "item") == []  # nullable omitted
    assert only_error({**item, "price": -1.0}, "item").startswith("price: must not be negative")
    assert only_error({**item, "created_at": NOW // 1000}, "item").startswith(
        "created_at: looks like seconds")
    no_category = {k: v for k, v in item.items() if k != "category"}
    assert only_error(no_category, "item") == "category: required field is missing"


def test_user_rules() -> None:
    user = {"user_id": "u-1", "signup_at": NOW - DAY, "country": "FR",
            "attributes": {"tier": "gold"}}
    assert errors(user, "user") == []
    assert check("user", {"user_id": "u-2"}, now_ms=NOW)["attributes"] == {}
    assert only_error({**user, "signup_at": NOW * 1000}, "user").startswith(
        "signup_at: looks like microseconds")
    assert only_error({**user, "user_id": "u\x1b"}, "user").startswith(
        "user_id: contains a control character")
    assert only_error({**user, "attributes": {"tier": None}}, "user").startswith(
        "attributes: expected map of string to string")


def test_new_v2_event_fields_are_optional_and_checked() -> None:
    assert errors(event(referrer="newsletter", price=12.5)) == []
    assert check("event", event(), now_ms=NOW)["price"] is None
    assert only_error(event(price=-1.0)).startswith("price: must not be negative")
    assert only_error(event(referrer=3)).startswith("referrer: expected null or string, got int 3")


def test_recommendation_rules() -> None:
    rec = {"user_id": "u-1", "items": [{"item_id": "i-1", "score": 0.9}], "path": "head",
           "reason": None, "model_version": "v42"}
    assert errors(rec, "recommendation") == []
    assert errors({**rec, "items": []}, "recommendation") == []
    message = only_error({**rec, "path": "middle"}, "recommendation")
    assert message == "path: unknown value 'middle', allowed: head, tail, session, fallback"
    bad_items = [{"item_id": "i-1", "score": 1.0}, {"item_id": "", "score": 0.5},
                 {"item_id": "i-3"}]
    assert errors({**rec, "items": bad_items}, "recommendation") == [
        "items[1].item_id: must not be empty",
        "items[2]: expected {item_id: string, score: double}, got dict {'item_id': 'i-3'}",
    ]



# --- docs/contracts.md ------------------------------------------------------------------------


def test_docs_examples_are_complete_records_the_contract_accepts() -> None:
    for kind in KINDS:
        assert list(EXAMPLES[kind]) == [f["name"] for f in schema(kind)["fields"]], kind
        assert validate(kind, EXAMPLES[kind], now_ms=NOW) == [], kind


def test_every_field_has_its_rules_in_words() -> None:
    assert set(rules("event")) == {f["name"] for f in schema("event")["fields"]}
    assert "at most 128 characters" in rules("event")["session_id"][1]
    assert any("seconds" in r and "nanoseconds" in r for r in rules("event")["timestamp"])
    assert rules("event")["value"][-1] == "required when event_type is rating: 0 to 10"


def test_committed_docs_are_up_to_date() -> None:
    committed = (REPO / "docs" / "contracts.md").read_text(encoding="utf-8")
    assert committed == render(), \
        "docs/contracts.md is out of date: run `python -m contracts.docs > docs/contracts.md`"
