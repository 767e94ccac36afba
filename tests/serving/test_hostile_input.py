"""Malformed and hostile input through the Flask test client: every one a clear 4xx JSON error
(or a 202 that says what was dropped), never a 500 with a traceback; and the dead-letter
queue bounded per request and per minute, with exact accounting across a 503 and its retry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from contracts.dlq import DeadLetter, DeadLetterQueue
from serving.body import depth
from serving.letter_budget import LetterBudget, TooManyRequests
from tests.serving.test_app import error, event, make_app, with_events


@pytest.fixture
def app_and_stream(tmp_path: Path) -> tuple[Any, Any]:
    app = make_app(tmp_path)
    return app, with_events(app, tmp_path)


def post_raw(app: Any, body: str | bytes) -> Any:
    return app.test_client().post("/v1/events", data=body, content_type="application/json")


# --- invalid Unicode, pathological nesting ----------------------------------------------------


@pytest.mark.parametrize("field", ["event_id", "user_id", "session_id", "item_id"])
def test_a_lone_surrogate_in_an_id_is_a_400_naming_the_field(app_and_stream: tuple[Any, Any], field: str) -> None:
    app, stream = app_and_stream
    raw = json.dumps(event(1)).replace(f'"{event(1)[field]}"', '"\\ud800"')  # JSON text with a lone surrogate
    response = post_raw(app, raw)
    assert response.status_code == 400, response.get_data(as_text=True)
    (problem,) = response.get_json()["errors"][0]["errors"]
    assert problem.startswith(f"{field}: contains a lone surrogate (U+D800")
    assert stream.stream == []


def test_a_lone_surrogate_in_free_text_is_a_400(app_and_stream: tuple[Any, Any]) -> None:
    app, stream = app_and_stream
    for over, field in (({"referrer": "x\ud800"}, "referrer"), ({"context": {"page": "\udfff"}}, "context")):
        response = post_raw(app, json.dumps(event(1, **over)))
        assert response.status_code == 400
        assert response.get_json()["errors"][0]["errors"][0].startswith(f"{field}: ")
        assert "lone surrogate" in response.get_json()["errors"][0]["errors"][0]
    assert stream.stream == []


@pytest.mark.parametrize("levels", [10_000, 100_000])
def test_json_nested_deeply_is_a_400_before_it_is_parsed(app_and_stream: tuple[Any, Any], levels: int) -> None:
    app, _ = app_and_stream
    message = error(post_raw(app, "[" * levels + "]" * levels), 400, "BadRequest")
    assert message.startswith(f"the body nests arrays/objects {levels} levels deep, at most 8 allowed")


def test_brackets_inside_strings_do_not_count_as_nesting(app_and_stream: tuple[Any, Any]) -> None:
    app, stream = app_and_stream
    response = post_raw(app, json.dumps(event(1, context={"query": "[[[[[[[[[[{{{{{{{{{{\\\"[["})))
    assert response.status_code == 202 and len(stream.stream) == 1


@pytest.mark.parametrize(("raw", "expected"), [
    (b"[]", 1), (b'{"a": [1, {"b": "[[["}]}', 3), (b'{"q": "a\\\\", "r": "[\\"[["}', 1),
    (b'"\\\\" [[ ]]', 2), (b'["\\"["]', 1), (b'"\\\\\\" [', 0), (b"", 0), (b"42", 0),
], ids=["empty-list", "brackets-in-string", "escaped-backslash-then-quote", "even-backslashes-close",
        "escaped-quote-stays-inside", "odd-backslashes-escape", "empty", "scalar"])
def test_depth_ignores_brackets_inside_strings_and_honours_escapes(raw: bytes, expected: int) -> None:
    assert depth(raw) == expected


def test_depth_is_linear_on_pathological_bodies() -> None:
    """An unterminated string of escaped quotes made a regex-based scan quadratic (hours for 1 MiB)."""
    assert depth(b'"' + b'\\"' * (1 << 19)) == 0
    assert depth(b"[" * (1 << 20)) == 1 << 20


def test_invalid_utf8_is_a_400(app_and_stream: tuple[Any, Any]) -> None:
    app, _ = app_and_stream
    message = error(post_raw(app, b'{"event_id": "\xff\xfe"}'), 400, "BadRequest")
    assert message == "the body must be JSON: one event object, or a list of them"


# --- unknown fields and the context field --------------------------------------------------------


def test_unknown_fields_are_dropped_and_named(app_and_stream: tuple[Any, Any]) -> None:
    """The contract's choice (contracts.validation.normalise, the same as ingest reading a landing
    file with the schema): unknown fields are dropped, not stored, and the answer says which."""
    app, stream = app_and_stream
    nested: Any = "deep"
    for _ in range(5):
        nested = {"n": nested}
    body = [event(1, colour="red", __proto__={"admin": True}), event(2, extra=nested), event(3)]
    response = app.test_client().post("/v1/events", json=body)
    assert response.status_code == 202
    answer = response.get_json()
    assert answer["accepted"] == 3
    assert answer["dropped_fields"] == [{"index": 0, "event_id": "ev-1", "fields": ["__proto__", "colour"]},
                                        {"index": 1, "event_id": "ev-2", "fields": ["extra"]}]
    stored = stream.stream
    assert all(set(e) == set(stream.stream[2]) for e in stored)  # the contract's fields, nothing else
    assert not {"colour", "__proto__", "extra"} & (set(stored[0]) | set(stored[1]))


@pytest.mark.parametrize(("context", "expected"), [
    ({"a": {"b": {"c": "d"}}}, "context: expected map of string to string"),
    ({f"k{j}": "v" for j in range(33)}, "context: too many entries (33), at most 32 allowed"),
    ({"k" * 65: "v"}, "context: key 'kkkkkkkkkkkkkkkkk...kkkkkkkkkkkkkkkkkk' too long (65 characters), at most 64"),
    ({"page": "x" * 513}, "context: value of 'page' too long (513 characters), at most 512 allowed"),
], ids=["nested", "too-many", "long-key", "long-value"])
def test_context_is_bounded_in_size_and_depth(app_and_stream: tuple[Any, Any], context: Any,
                                              expected: str) -> None:
    app, stream = app_and_stream
    response = app.test_client().post("/v1/events", json=event(1, context=context))
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["errors"][0].startswith(expected)
    assert stream.stream == []


# --- anything unexpected is a JSON 500 without a traceback ---------------------------------------


class ExplodingRouter:
    """Injected fault: a bug in the handler's service call (no input makes the real router raise
    a non-Blink error; that is what this test is for)."""

    def recommend(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")


def test_an_unexpected_error_is_a_json_500_without_traceback(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    app.testing = False
    app.extensions["blink"]["router"] = ExplodingRouter()
    response = app.test_client().get("/v1/recommendations/u0")
    message = error(response, 500, "InternalError")
    text = response.get_data(as_text=True)
    assert "secret internal detail" not in text and "Traceback" not in text and "logged" in message


# --- the dead-letter budget ------------------------------------------------------------------------


def bad(n: int, size: int = 0) -> dict[str, Any]:
    return event(n, event_type="clik", referrer="r" * size)


def test_dead_letters_per_request_are_capped_413_and_nothing_is_taken(tmp_path: Path) -> None:
    app = make_app(tmp_path, dlq_request_bytes=4096)
    stream = with_events(app, tmp_path)
    response = app.test_client().post("/v1/events", json=[event(1)] + [bad(n, 1000) for n in range(2, 8)])
    message = error(response, 413, "PayloadTooLarge")
    assert "cap per request; nothing was taken" in message and "event_type: unknown value 'clik'" in message
    assert stream.stream == [] and DeadLetterQueue(tmp_path / "dlq").count("event") == 0
    budget = app.extensions["blink"]["events"].budget
    assert budget.counts["refused_request"] == 6


def test_dead_letters_per_minute_are_capped_429_and_counted(tmp_path: Path) -> None:
    app = make_app(tmp_path, dlq_minute_records=5)
    stream = with_events(app, tmp_path)
    client = app.test_client()
    assert client.post("/v1/events", json=[bad(n) for n in range(4)]).status_code == 400
    refused = client.post("/v1/events", json=[event(10), bad(11), bad(12)])
    assert "too many invalid records in the last minute" in error(refused, 429, "TooManyRequests")
    assert [e["event_id"] for e in stream.stream] == []  # the refused request took nothing, valid ones included
    assert DeadLetterQueue(tmp_path / "dlq").count("event") == 4
    assert client.post("/v1/events", json=[event(10)]).status_code == 202  # valid events still flow
    assert app.extensions["blink"]["events"].budget.counts["refused_rate"] == 2


def test_a_huge_invalid_record_is_truncated_in_the_dead_letter_queue(tmp_path: Path) -> None:
    app = make_app(tmp_path, dlq_letter_bytes=1024)
    with_events(app, tmp_path)
    assert app.test_client().post("/v1/events", json=[bad(1, 50_000)]).status_code == 400
    (letter,) = DeadLetterQueue(tmp_path / "dlq").entries("event")
    assert len(letter.payload) == 1024 and "payload truncated from 50" in letter.reason


def test_a_batch_refused_with_503_then_retried_is_dead_lettered_once(tmp_path: Path) -> None:
    """sent = accepted + duplicates + dead-lettered over a refused-then-retried batch."""
    app = make_app(tmp_path)
    stream = with_events(app, tmp_path, fail=redis.TimeoutError("Timeout reading from socket"))
    batch = [event(1), bad(2), event(3)]
    client = app.test_client()
    assert client.post("/v1/events", json=batch).status_code == 503
    dlq = DeadLetterQueue(tmp_path / "dlq")
    assert dlq.count("event") == 0 and stream.stream == []  # a 503 writes nothing
    stream.fail = None
    retry = client.post("/v1/events", json=batch)
    assert retry.status_code == 400
    body = retry.get_json()
    assert body["accepted"] + body["duplicates"] + dlq.count("event") == len(batch)
    assert (body["accepted"], dlq.count("event")) == (2, 1)


def test_the_dead_letter_window_slides_and_a_released_hold_is_given_back() -> None:
    """LetterBudget on its own, with a clock the test moves (no waiting a real minute)."""
    now = [0.0]
    budget = LetterBudget(letter_bytes=100, request_bytes=10_000, minute_bytes=10_000, minute_records=3,
                          clock=lambda: now[0])
    letter = DeadLetter(source="api", kind="event", payload="{}", reason="event_type: unknown value", at_ms=0)
    first = budget.reserve([letter, letter])
    with pytest.raises(TooManyRequests):
        budget.reserve([letter, letter])
    budget.release(first)  # that request was refused with 503 after all
    second = budget.reserve([letter, letter])
    now[0] = 59.0
    with pytest.raises(TooManyRequests):
        budget.reserve([letter, letter])
    now[0] = 60.5  # the first minute's letters have left the window
    assert budget.reserve([letter, letter, letter]).records == 3
    assert second.records == 2 and budget.counts["refused_rate"] == 4
