"""Validate records against their Avro contract plus Blink's semantic rules.

Every record entering Blink (API events, landing files, importer output) goes through
``validate``. The Avro check (fastavro) decides the types; the semantic rules catch what a
type cannot: timestamps in the wrong unit, ids with control characters, a rating of 42.
Each message starts with ``field: rule`` and then says how to fix it, so the dead-letter
queue can group rejects by rule (see ``contracts.dlq.reason_key``).

A nullable field that is absent reads as null: JSON producers, and Spark's ``toJSON``, omit
nulls, and Avro would fill the same null on read.

Timestamps are epoch milliseconds; an ISO-8601 time *with a zone* (``2026-03-01T12:00:00Z``,
``...+01:00``) is the documented alternative. ``normalize`` turns it into epoch milliseconds
before any rule runs, so every door (API, files, landing, replay) accepts both and the lake
only ever holds integers. A time without a zone is rejected: guessing one shifts every event.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import reprlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast, get_args

from fastavro import parse_schema
from fastavro.validation import validate as avro_valid

from blink.errors import ContractViolation
from contracts import ids

Kind = Literal["event", "item", "user", "recommendation"]
KINDS: tuple[Kind, ...] = get_args(Kind)
SCHEMA_DIR = Path(__file__).parent / "schemas"

ID_FIELDS = frozenset({"event_id", "user_id", "session_id", "item_id"})  # checked by contracts.ids
NON_NEGATIVE_FIELDS = frozenset({"price"})
ITEMLESS_EVENT_TYPES = ("search",)  # the event types whose item_id may be null
MIN_TIMESTAMP_MS = 631_152_000_000  # 1990-01-01T00:00:00Z: older data is a unit or clock bug
MAX_SKEW_MS = 86_400_000  # accept clocks up to one day ahead, not more
RATING_RANGE = (0.0, 10.0)
# Free text is bounded so one record cannot carry megabytes into the stream, the lake or Redis.
CONTEXT_MAX_ENTRIES, CONTEXT_MAX_KEY, CONTEXT_MAX_VALUE = 32, 64, 512
TEXT_MAX = 2048  # other free-text strings (referrer)
TEXT_FIELDS = frozenset({"referrer"})
# Epoch values this large are not milliseconds: their magnitude tells the unit the producer used.
SECONDS_BELOW, MICROS_FROM, NANOS_FROM = 10**11, 10**14, 10**17

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MISSING = object()
_repr = reprlib.Repr()  # short reprs: a rejected payload may be huge
_repr.maxstring = _repr.maxother = 40

Rule = Callable[[Any, int], str | None]  # (value, now_ms) -> problem or None


def versions(kind: Kind, directory: Path = SCHEMA_DIR) -> list[int]:
    """Schema versions available for ``kind`` in ``directory`` (the shipped schemas), oldest first."""
    if kind not in KINDS:
        raise ValueError(f"unknown contract kind {kind!r}; expected one of {', '.join(KINDS)}")
    names = (p.name for p in Path(directory).glob(f"{kind}.v*.avsc"))  # e.g. event.v1.avsc
    return sorted(int(name.split(".")[1][1:]) for name in names)


@functools.cache
def schema(kind: Kind, version: int | None = None, directory: Path = SCHEMA_DIR) -> dict[str, Any]:
    """The parsed Avro schema of ``kind`` (latest version unless ``version`` is given); cached.

    ``directory`` holds ``<kind>.v<N>.avsc`` files; validation always uses the shipped ones,
    other directories are for checking candidate schemas (``contracts.evolution``).
    """
    available = versions(kind, directory)
    if not available:
        raise ValueError(f"no {kind} schema in {directory}: add {kind}.v1.avsc")
    version = available[-1] if version is None else version
    if version not in available:
        raise ValueError(f"no {kind} schema v{version} in {directory}; available: {available}")
    with open(Path(directory) / f"{kind}.v{version}.avsc", encoding="utf-8") as fh:
        return cast(dict[str, Any], parse_schema(json.load(fh)))


def _symbols(kind: Kind, field: str) -> tuple[str, ...]:
    ftype = next(f["type"] for f in schema(kind)["fields"] if f["name"] == field)
    return tuple(ftype["symbols"])


EVENT_TYPES = _symbols("event", "event_type")
DEVICES = _symbols("event", "device")


# --- value rules: return a problem (without the field name) or None -----------------------


def _show(value: Any) -> str:
    return f"{type(value).__name__} {_repr.repr(value)}"


def _iso(ms: int) -> str:
    try:
        return (_EPOCH + timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z")
    except OverflowError:
        return "a date outside years 1-9999"


def _pow10(n: int) -> str:
    return f"10^{len(str(n)) - 1}"


def _id_rule(nullable: bool) -> Rule:
    def rule(v: Any, now_ms: int) -> str | None:
        if not isinstance(v, str):
            return None  # a type problem: the Avro check reports it
        problem = ids.id_problem(v)
        if problem == ids.EMPTY and nullable:
            return f"{problem}, send null if there is none"
        return problem

    return rule


ISO_EXAMPLE = "2026-03-01T12:00:00Z"


def iso_to_ms(text: str) -> int | str:
    """An ISO-8601 time with a zone as epoch milliseconds, or the problem with it (a str).

    ``Z`` and offsets (``+01:00``, ``-0500``) are zones; fractions below a millisecond are cut.
    """
    if text.strip().lstrip("+-").isdigit():
        return f"expected epoch milliseconds as a number, got the text {text!r} (send it without quotes)"
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return (f"expected epoch milliseconds (an integer) or an ISO-8601 time with a zone like "
                f"{ISO_EXAMPLE}, got {_show(text)}")
    if when.tzinfo is None or when.utcoffset() is None:
        return (f"no time zone, add Z for UTC or an offset like +02:00 to the ISO-8601 time {text!r} "
                f"(a guessed zone would shift the event)")
    return (when - _EPOCH) // timedelta(milliseconds=1)


def timestamp_ms(value: Any) -> Any:
    """A timestamp value as the contract keeps it: an ISO-8601 string or an aware datetime
    with a zone becomes epoch milliseconds; anything else is returned as it is (the timestamp
    rule then judges it, with the reason)."""
    if isinstance(value, str):
        converted = iso_to_ms(value)
        return converted if isinstance(converted, int) else value
    if isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset() is not None:
        return (value - _EPOCH) // timedelta(milliseconds=1)
    return value


def _timestamp_rule(v: Any, now_ms: int) -> str | None:
    if type(v) is not int:  # fast path first; numpy ints are Integral, bools are not allowed
        if isinstance(v, str):  # normalize() converted the valid ISO-8601 ones: say what is wrong
            problem = iso_to_ms(v)
            return problem if isinstance(problem, str) else None
        if isinstance(v, date):
            return (f"expected epoch milliseconds or an ISO-8601 time with a zone, got a "
                    f"{type(v).__name__} without a zone ({v.isoformat()}), add the zone")
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            return f"expected an integer of epoch milliseconds, got {_show(v)}"
        v = int(v)
    if MIN_TIMESTAMP_MS <= v <= now_ms + MAX_SKEW_MS:
        return None
    # Wrong units are the usual cause, and their magnitude gives them away.
    if 0 < v < SECONDS_BELOW:
        return f"looks like seconds ({v}), send milliseconds (multiply by 1000)"
    if MICROS_FROM <= v < NANOS_FROM:
        return f"looks like microseconds ({v}), send milliseconds (divide by 1000)"
    if v >= NANOS_FROM:
        return f"looks like nanoseconds ({v}), send milliseconds (divide by 1_000_000)"
    if v < MIN_TIMESTAMP_MS:
        return f"too old ({_iso(v)}), must be on or after 1990-01-01 in epoch milliseconds"
    return f"too far in the future ({_iso(v)}), at most now + 1 day, check the producer's clock"


def _finite_rule(nullable: bool) -> Rule:
    hint = ", send null for no value" if nullable else ""

    def rule(v: Any, now_ms: int) -> str | None:
        if isinstance(v, float) and not math.isfinite(v):
            return f"must be a finite number (got {v}){hint}"
        return None

    return rule


def _text_problem(v: str, max_len: int) -> str | None:
    if len(v) > max_len:
        return f"too long ({len(v)} characters), at most {max_len} allowed"
    bad = ids.SURROGATE.search(v)
    if bad:
        return f"contains a lone surrogate (U+{ord(bad.group()):04X} at position {bad.start()}), send valid UTF-8 text"
    return None


def _text_rule(v: Any, now_ms: int) -> str | None:
    return _text_problem(v, TEXT_MAX) if isinstance(v, str) else None  # a type problem: Avro reports it


def _context_rule(v: Any, now_ms: int) -> str | None:
    if not isinstance(v, Mapping):
        return None  # a type problem: the Avro check reports it
    if len(v) > CONTEXT_MAX_ENTRIES:
        return f"too many entries ({len(v)}), at most {CONTEXT_MAX_ENTRIES} allowed"
    for key, value in v.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return None  # a type problem: the Avro check reports it
        problem = _text_problem(key, CONTEXT_MAX_KEY)
        if problem:
            return f"key {_repr.repr(key)} {problem}"
        problem = _text_problem(value, CONTEXT_MAX_VALUE)
        if problem:
            return f"value of {_repr.repr(key)} {problem}"
    return None


def _non_negative(v: Any, now_ms: int) -> str | None:
    if isinstance(v, int | float) and not isinstance(v, bool) and v < 0:
        return f"must not be negative (got {v})"
    return None


# --- compiled contract ----------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One field of a contract, compiled from its Avro schema: what ``validate`` checks on it."""

    name: str
    required: bool  # neither nullable nor defaulted: every valid record carries a value
    nullable: bool
    default: Any
    main: Any  # the type without its null branch: "string", {"type": "enum", ...}
    avro: Any  # the field type parsed on its own ("string", a union, a dict), to pinpoint errors
    describe: str
    symbols: tuple[str, ...]  # allowed enum values, for the "unknown value" message
    rules: tuple[Rule, ...]
    rule_docs: tuple[str, ...]  # what the rules check, in words (for docs/contracts.md)


def describe_type(t: Any) -> str:
    """An Avro type in words, as messages show it: ``"null or string"``, ``"one of a, b"``."""
    return _describe(t)


def _describe(t: Any) -> str:
    if isinstance(t, list):
        return " or ".join(_describe(b) for b in t)
    if isinstance(t, str):
        return t
    if t.get("logicalType") == "timestamp-millis":
        return "long (epoch milliseconds)"
    if t["type"] == "enum":
        return "one of " + ", ".join(t["symbols"])
    if t["type"] == "map":
        return f"map of string to {_describe(t['values'])}"
    if t["type"] == "array":
        return f"array of {_describe(t['items'])}"
    if t["type"] == "record":
        return "{" + ", ".join(f"{f['name']}: {_describe(f['type'])}" for f in t["fields"]) + "}"
    return _describe(t["type"])


def _compile_field(f: dict[str, Any]) -> Field:
    branches = f["type"] if isinstance(f["type"], list) else [f["type"]]
    nullable = "null" in branches
    (main,) = [b for b in branches if b != "null"]  # our unions are all [null, X]
    base = main if isinstance(main, str) else main["type"]
    required = not nullable and "default" not in f
    rules: list[Rule] = []
    docs = ["required" if required else "optional, omitted = "
            + json.dumps(f.get("default") if "default" in f else None)]
    if f["name"] in ID_FIELDS:
        rules.append(_id_rule(nullable))
        docs.append(ids.RULE)
    if isinstance(main, dict) and main.get("logicalType") == "timestamp-millis":
        rules.append(_timestamp_rule)
        docs.append(f"integer epoch milliseconds, or an ISO-8601 time with a zone ({ISO_EXAMPLE}, "
                    f"+01:00) converted to them; a time without a zone is rejected")
        docs.append(f"from {_iso(MIN_TIMESTAMP_MS)[:10]} to now + "
                    f"{MAX_SKEW_MS // 3_600_000} h; seconds (< {_pow10(SECONDS_BELOW)}), microseconds "
                    f"({_pow10(MICROS_FROM)} to {_pow10(NANOS_FROM)}) and nanoseconds "
                    f"(>= {_pow10(NANOS_FROM)}) are rejected naming the unit and the fix")
    if base in ("double", "float"):
        rules.append(_finite_rule(nullable))
        docs.append("finite (no NaN or infinity)")
    if f["name"] in NON_NEGATIVE_FIELDS:
        rules.append(_non_negative)
        docs.append("not negative")
    if f["name"] in TEXT_FIELDS:
        rules.append(_text_rule)
        docs.append(f"at most {TEXT_MAX} characters, no lone surrogates")
    if base == "map":
        rules.append(_context_rule)
        docs.append(f"at most {CONTEXT_MAX_ENTRIES} entries; keys at most {CONTEXT_MAX_KEY} characters, values "
                    f"at most {CONTEXT_MAX_VALUE}; no lone surrogates")
    if base == "enum":
        docs.append("any other value is rejected, listing the allowed ones")
    return Field(
        name=f["name"],
        required=required,
        nullable=nullable,
        default=f.get("default"),
        main=main,
        avro=parse_schema(f["type"]),
        describe=_describe(f["type"]),
        symbols=tuple(main["symbols"]) if base == "enum" else (),
        rules=tuple(rules),
        rule_docs=tuple(docs),
    )


@functools.cache
def fields(kind: Kind) -> tuple[Field, ...]:
    """The fields of ``kind``'s latest schema, in schema order, as ``validate`` checks them."""
    return tuple(_compile_field(f) for f in schema(kind)["fields"])


def _type_problem(f: Field, value: Any) -> str:
    if f.symbols and isinstance(value, str):
        return f"{f.name}: unknown value {value!r}, allowed: {', '.join(f.symbols)}"
    return f"{f.name}: expected {f.describe}, got {_show(value)}"


# --- rules across fields ----------------------------------------------------------------------


def _event_rules(r: Mapping[str, Any], bad: set[str], now_ms: int) -> list[str]:
    out = []
    etype = r.get("event_type")
    if r.get("item_id") is None and etype not in ITEMLESS_EVENT_TYPES and "event_type" not in bad:
        out.append(f"item_id: null is only allowed for event_type {' or '.join(ITEMLESS_EVENT_TYPES)}, "
                   f"send the id of the item of this {etype!r} event")
    value = r.get("value")
    if etype == "rating" and "value" not in bad:
        low, high = RATING_RANGE
        if value is None:
            out.append(f"value: rating needs a value, send the rating between {low:g} and {high:g}")
        elif isinstance(value, int | float) and not isinstance(value, bool) \
                and not low <= value <= high:
            out.append(f"value: rating out of range {low:g}..{high:g} (got {value})")
    return out


_ITEM_ID_RULE, _SCORE_RULE = _id_rule(False), _finite_rule(False)


def _recommendation_rules(r: Mapping[str, Any], bad: set[str], now_ms: int) -> list[str]:
    out: list[str] = []
    items = r.get("items")
    if "items" in bad or not isinstance(items, list):
        return out
    array = next(f for f in fields("recommendation") if f.name == "items")
    for i, item in enumerate(items):
        # Point at the element: "items: expected array of ..." alone is no help in a long list.
        if not avro_valid([item], array.avro, raise_errors=False):
            out.append(f"items[{i}]: expected {_describe(array.avro['items'])}, got {_show(item)}")
            continue
        for name, rule in (("item_id", _ITEM_ID_RULE), ("score", _SCORE_RULE)):
            problem = rule(item[name], now_ms)
            if problem:
                out.append(f"items[{i}].{name}: {problem}")
    if out:
        bad.add("items")  # already explained element by element
    return out


_RECORD_RULES: dict[str, Callable[[Mapping[str, Any], set[str], int], list[str]]] = {
    "event": _event_rules,
    "recommendation": _recommendation_rules,
}
# What the record rules above check, per field, in words (keep in step with the functions).
_RECORD_RULE_DOCS: dict[str, dict[str, str]] = {
    "event": {
        "item_id": f"null only when event_type is {' or '.join(ITEMLESS_EVENT_TYPES)}",
        "value": f"required when event_type is rating: {RATING_RANGE[0]:g} to {RATING_RANGE[1]:g}",
    },
    "recommendation": {
        "items": "each element checked on its own: item_id by the id rules, score finite; "
                 "problems name the element (items[3].score)",
    },
}


# --- public API -------------------------------------------------------------------------------


@functools.cache
def timestamp_fields(kind: Kind) -> tuple[str, ...]:
    """The fields of ``kind`` that hold a time (``timestamp-millis``)."""
    return tuple(f.name for f in fields(kind)
                 if isinstance(f.main, dict) and f.main.get("logicalType") == "timestamp-millis")


def normalize(kind: Kind, record: Any) -> Any:
    """``record`` with its times as epoch milliseconds (ISO-8601 with a zone converted).

    Returns the same object when nothing needed converting (the usual case: no copy), a new
    dict otherwise; anything that is not a mapping is returned as it is.
    """
    if not isinstance(record, Mapping):
        return record
    out: dict[str, Any] | None = None
    for name in timestamp_fields(kind):
        value = record.get(name)
        if isinstance(value, (str, datetime)):
            converted = timestamp_ms(value)
            if converted is not value:
                out = dict(record) if out is None else out
                out[name] = converted
    return record if out is None else out


def validate(kind: Kind, record: Mapping[str, Any], now_ms: int | None = None) -> list[str]:
    """Problems with ``record`` as a ``kind`` (``[]`` when valid).

    Each problem names the field and says how to fix it. ``now_ms`` (epoch ms) bounds
    timestamps from above; pass it when validating a batch so the answer is reproducible.
    Times are judged after ``normalize`` (an ISO-8601 time with a zone is valid).
    """
    compiled = fields(kind)
    if not isinstance(record, Mapping):
        return [f"{kind}: expected a mapping of field names to values, got {_show(record)}"]
    record = normalize(kind, record)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    errors: list[str] = []
    bad: set[str] = set()
    for f in compiled:
        value = record.get(f.name, _MISSING)
        if value is _MISSING or value is None:
            if f.nullable or (value is _MISSING and not f.required):
                continue
            bad.add(f.name)
            errors.append(f"{f.name}: required field is missing" if value is _MISSING
                          else f"{f.name}: must not be null, expected {f.describe}")
            continue
        for rule in f.rules:
            problem = rule(value, now)
            if problem:
                bad.add(f.name)
                errors.append(f"{f.name}: {problem}")
                break
    record_rules = _RECORD_RULES.get(kind)
    if record_rules:
        errors += record_rules(record, bad, now)
    # One fast whole-record Avro check; only when it fails, find which fields are wrong.
    if not avro_valid(record, schema(kind), raise_errors=False):
        for f in compiled:
            value = record.get(f.name, f.default)
            if f.name not in bad and not avro_valid(value, f.avro, raise_errors=False):
                errors.append(_type_problem(f, value))
        if not errors:  # not expected; never let an invalid record through silently
            errors.append(f"{kind}: does not match schema {schema(kind)['name']}")
    return errors


def rules(kind: Kind) -> dict[str, list[str]]:
    """Field name -> what ``validate`` checks on it, in words (the "rule" column of the docs)."""
    extra = _RECORD_RULE_DOCS.get(kind, {})
    return {f.name: [*f.rule_docs, *([extra[f.name]] if f.name in extra else [])]
            for f in fields(kind)}


def check(kind: Kind, record: Mapping[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    """The record normalized to its schema, or raise ``ContractViolation`` listing all problems.

    Normalized: fields in schema order, absent optional fields filled (null or the schema
    default), fields the schema does not know dropped, times in epoch milliseconds.
    """
    record = normalize(kind, record)
    errors = validate(kind, record, now_ms)
    if errors:
        raise ContractViolation(errors)
    return normalise(kind, record)


def normalise(kind: Kind, record: Mapping[str, Any]) -> dict[str, Any]:
    """A valid ``record`` in its schema's shape: fields in schema order, absent optional fields
    filled (null or the schema default), fields the schema does not know dropped (as an Avro
    reader drops them, and as ingest does when it reads a landing file with the contract)."""
    out: dict[str, Any] = {}
    for f in fields(kind):
        value = record.get(f.name)
        # Copy mutable defaults so callers cannot change the schema's default by accident.
        out[f.name] = (f.default.copy() if isinstance(f.default, dict) else f.default) \
            if value is None else value
    return out


def unknown_fields(kind: Kind, record: Mapping[str, Any]) -> list[str]:
    """Names in ``record`` that ``kind``'s schema does not define (``normalise`` drops them)."""
    known = {f.name for f in fields(kind)}
    return sorted(str(name) for name in record if name not in known)
