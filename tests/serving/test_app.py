"""The HTTP layer (serving/app.py) through Flask's test client: answer shapes, status codes and
error bodies. No Redis: the app is built with an in-memory store, the small model of the router
tests is put in its registry, and the event stream is a tiny in-process stand-in."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from blink.config import Config
from blink.keys import Keys
from blink.pipeline import Pipeline
from blink.store import MemoryStore
from contracts.dlq import DeadLetterQueue
from serving.app import create_app, letter_budget
from serving.event_log import EventLog
from tests.serving.test_router import N_ITEMS, small_model

NOW = 1_790_000_000_000
ANSWER_KEYS = {"user_id", "items", "path", "model_version", "reason", "latency_ms", "stages_ms"}


def make_app(tmp_path: Path, store: MemoryStore | None = None, model: bool = True, **serving: Any) -> Flask:
    """The real app factory on a MemoryStore; ``model`` puts small_model() (version v1) in the registry."""
    cfg = Config(paths={"var_dir": tmp_path / "var"}, serving=serving)
    app = create_app(cfg, store if store is not None else MemoryStore(), start_reload=False)
    app.testing = True  # an unexpected exception fails the test instead of becoming a 500
    if model:  # as if the store's current version were v1 and had loaded
        registry = app.extensions["blink"]["registry"]
        registry.pipeline, registry.source, registry.last_error = Pipeline(small_model(), 30), "store", None
    return app


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    return make_app(tmp_path).test_client()


def error(response: Any, status: int, error_name: str) -> str:
    """The message of a JSON error body, after checking its status and error name."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body is not None and set(body) == {"error", "message"} and body["error"] == error_name, body
    return str(body["message"])


# --- GET /v1/recommendations/<user_id> -----------------------------------------------------------


def test_recommendations_answer_shape(client: FlaskClient) -> None:
    response = client.get("/v1/recommendations/u0?k=5&device=mobile")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == ANSWER_KEYS
    assert (body["user_id"], body["path"], body["model_version"], body["reason"]) == ("u0", "tail", "v1", None)
    assert len(body["items"]) == 5
    assert all(set(i) == {"item_id", "score"} and isinstance(i["score"], float) for i in body["items"])
    assert not {"i0", "i1", "i2"} & {i["item_id"] for i in body["items"]}  # u0's history is filtered
    assert body["latency_ms"] >= 0 and set(body["stages_ms"]) >= {"store_read", "retrieval", "ranking"}


def test_recommendations_default_k_comes_from_config(tmp_path: Path) -> None:
    body = make_app(tmp_path, default_k=7).test_client().get("/v1/recommendations/stranger").get_json()
    assert body["path"] == "fallback" and body["reason"] == "no history for this user"
    assert [i["item_id"] for i in body["items"]] == [f"i{j}" for j in range(7)]  # trending


def test_recommendations_head_path_serves_the_published_list(tmp_path: Path) -> None:
    store = MemoryStore()
    store.publish("v1", [("u0", [("i9", 2.0), ("i8", 1.0)])], [], {})
    body = make_app(tmp_path, store).test_client().get("/v1/recommendations/u0?k=5").get_json()
    assert body["path"] == "head" and body["items"] == [{"item_id": "i9", "score": 2.0},
                                                        {"item_id": "i8", "score": 1.0}]


def test_recommendations_without_a_model_answer_an_empty_fallback(tmp_path: Path) -> None:
    response = make_app(tmp_path, model=False).test_client().get("/v1/recommendations/u0")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["path"], body["items"], body["model_version"]) == ("fallback", [], None)
    assert body["reason"] == "no model version published yet"


@pytest.mark.parametrize(("url", "expected"), [
    ("/v1/recommendations/u%C2%85", "user_id: contains a control character (U+0085 at position 1)"),
    ("/v1/recommendations/u%07", "user_id: contains a control character (U+0007 at position 1)"),
    ("/v1/recommendations/" + "x" * 200, "user_id: too long (200 characters), at most 128 allowed"),
    ("/v1/recommendations/%20u0", "user_id: has leading or trailing whitespace"),
    ("/v1/recommendations/u0?k=0", "k must be between 1 and 100; got 0"),
    ("/v1/recommendations/u0?k=101", "k must be between 1 and 100; got 101"),
    ("/v1/recommendations/u0?k=-3", "k must be between 1 and 100; got -3"),
    ("/v1/recommendations/u0?k=abc", "k must be an integer; got 'abc'"),
    ("/v1/recommendations/u0?k=2.5", "k must be an integer; got '2.5'"),
    ("/v1/recommendations/u0?k=", "k must be an integer; got ''"),
    ("/v1/recommendations/u0?device=fridge", "device must be one of desktop, mobile, tablet, tv, unknown"),
    ("/v1/recommendations/u0?session_id=s%0A1", "session_id: contains a control character (U+000A"),
], ids=["nel-control-char", "bell", "too-long", "whitespace", "k-zero", "k-too-big", "k-negative",
        "k-not-int", "k-float", "k-empty", "bad-device", "bad-session-id"])
def test_recommendations_bad_input_is_400_with_a_message(client: FlaskClient, url: str, expected: str) -> None:
    assert expected in error(client.get(url), 400, "BadRequest")


def test_k_bounds_are_inclusive(client: FlaskClient) -> None:
    assert len(client.get("/v1/recommendations/u1?k=1").get_json()["items"]) == 1
    assert client.get("/v1/recommendations/u1?k=100").status_code == 200
    assert client.get("/v1/recommendations/" + "x" * 128).status_code == 200  # MAX_ID_LEN exactly


@pytest.mark.parametrize("url", ["/v1/recommendations/u%FF", "/v1/recommendations/u%ED%A0%80",
                                 "/v1/recommendations/u0?session_id=s%FF", "/v1/items/i%C3/similar"],
                         ids=["path-ff", "path-lone-surrogate", "query", "truncated-sequence"])
def test_invalid_utf8_in_the_url_is_400(client: FlaskClient, url: str) -> None:
    """werkzeug decodes invalid UTF-8 to U+FFFD; the app checks the raw bytes first."""
    assert error(client.get(url), 400, "BadRequest").startswith("the URL is not valid UTF-8")


def test_valid_utf8_ids_in_the_url_are_served(client: FlaskClient) -> None:
    assert client.get("/v1/recommendations/%C3%A9l%C3%A8ve?session_id=s%C3%A9").status_code == 200


# --- GET /v1/items/<item_id>/similar -------------------------------------------------------------


def test_similar_items_realtime(client: FlaskClient) -> None:
    response = client.get("/v1/items/i3/similar?k=4")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"item_id", "items", "path", "model_version"}
    assert (body["item_id"], body["path"], body["model_version"]) == ("i3", "realtime", "v1")
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 4 and "i3" not in ids and set(ids) <= {f"i{j}" for j in range(N_ITEMS)}


def test_similar_items_precomputed(tmp_path: Path) -> None:
    store = MemoryStore()
    store.publish("v1", [], [], {}, similar=[("i3", [("i7", 0.9), ("i8", 0.8), ("i9", 0.7)])])
    body = make_app(tmp_path, store).test_client().get("/v1/items/i3/similar?k=2").get_json()
    assert body["path"] == "precomputed" and body["items"] == [{"item_id": "i7", "score": 0.9},
                                                               {"item_id": "i8", "score": 0.8}]


def test_similar_items_errors(client: FlaskClient, tmp_path: Path) -> None:
    assert error(client.get("/v1/items/nope/similar"), 404, "NotFound") == "item 'nope' is not in model version v1"
    assert "item_id: contains a control character" in error(client.get("/v1/items/i%C2%851/similar"), 400,
                                                             "BadRequest")
    assert "k must be between 1 and 100" in error(client.get("/v1/items/i3/similar?k=0"), 400, "BadRequest")
    assert "k must be an integer" in error(client.get("/v1/items/i3/similar?k=x"), 400, "BadRequest")
    no_model = make_app(tmp_path, model=False).test_client()
    assert error(no_model.get("/v1/items/i3/similar"), 503, "NotReady") == "no model version published yet"


# --- POST /v1/events ----------------------------------------------------------------------------


class StreamStandIn:
    """Just enough of redis.Redis for EventLog: the append-once script (SET NX + XADD) in a
    transaction-less pipeline. ``fail`` makes execute() raise, like a Redis outage."""

    def __init__(self, fail: redis.RedisError | None = None) -> None:
        self.seen: set[str] = set()
        self.stream: list[dict[str, Any]] = []
        self.fail = fail
        self.queued: list[Callable[[], Any]] = []

    def register_script(self, script: str) -> Callable[..., None]:
        def append_once(keys: list[str], args: list[Any], client: StreamStandIn) -> None:
            client.queued.append(lambda: self._append(keys[0], args[1]))
        return append_once

    def _append(self, seen_key: str, payload: str) -> str | None:
        if seen_key in self.seen:
            return None
        self.seen.add(seen_key)
        self.stream.append(json.loads(payload))
        return f"{len(self.stream)}-0"

    def pipeline(self, transaction: bool = False) -> StreamStandIn:
        return self

    def execute(self) -> list[Any]:
        queued, self.queued = self.queued, []
        if self.fail is not None:
            raise self.fail
        return [op() for op in queued]


def event(n: int, **over: Any) -> dict[str, Any]:
    base = {"event_id": f"ev-{n}", "user_id": f"u{n % 7}", "session_id": f"s{n % 3}", "item_id": f"i{n}",
            "event_type": "click", "timestamp": NOW + n, "device": "mobile", "value": None}
    return base | over


def with_events(app: Flask, tmp_path: Path, fail: redis.RedisError | None = None) -> StreamStandIn:
    """Give ``app`` an event log over a stand-in stream (create_app only wires one with Redis),
    with the dead-letter budget from the app's config, as create_app wires it."""
    stream = StreamStandIn(fail)
    app.extensions["blink"]["events"] = EventLog(stream, Keys("t"), DeadLetterQueue(tmp_path / "dlq"),  # type: ignore[arg-type]
                                                 budget=letter_budget(app.extensions["blink"]["cfg"]))
    return stream


def test_events_accepted_is_202(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    stream = with_events(app, tmp_path)
    response = app.test_client().post("/v1/events", json=[event(1), event(2), event(2)])
    assert response.status_code == 202
    body = response.get_json()
    assert (body["accepted"], body["duplicates"], body["rejected"], body["errors"]) == (2, 1, 0, [])
    assert body["path"] == "events" and body["latency_ms"] >= 0
    assert [e["event_id"] for e in stream.stream] == ["ev-1", "ev-2"]
    single = app.test_client().post("/v1/events", json=event(3))  # one object, not a list
    assert single.status_code == 202 and single.get_json()["accepted"] == 1


def test_events_with_invalid_records_are_400_and_keep_the_valid_ones(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    stream = with_events(app, tmp_path)
    response = app.test_client().post("/v1/events", json=[event(1), event(2, event_type="clik"), "not an object"])
    assert response.status_code == 400
    body = response.get_json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 0, 2)
    assert [(e["index"], e["event_id"]) for e in body["errors"]] == [(1, "ev-2"), (2, None)]
    assert all(e["errors"] for e in body["errors"])  # each rejection says why
    assert [e["event_id"] for e in stream.stream] == ["ev-1"]
    assert DeadLetterQueue(tmp_path / "dlq").count("event") == 2


@pytest.mark.parametrize(("data", "content_type"), [
    ("{not json", "application/json"),
    ('"a string"', "application/json"),
    ("42", "application/json"),
    ("", "application/json"),
    ('{"event_id": "ev-1"}', "text/plain"),  # JSON, but not declared as JSON
], ids=["malformed", "string", "number", "empty", "not-declared-json"])
def test_events_bad_body_is_400(client: FlaskClient, data: str, content_type: str) -> None:
    message = error(client.post("/v1/events", data=data, content_type=content_type), 400, "BadRequest")
    assert message == "the body must be JSON: one event object, or a list of them"


def test_events_batch_size_is_bounded(tmp_path: Path) -> None:
    client = make_app(tmp_path, max_batch=2).test_client()
    assert error(client.post("/v1/events", json=[]), 400, "BadRequest") == "send 1 to 2 events per request; got 0"
    too_many = client.post("/v1/events", json=[event(1), event(2), event(3)])
    assert error(too_many, 400, "BadRequest") == "send 1 to 2 events per request; got 3"


def test_events_body_over_the_limit_is_413(client: FlaskClient) -> None:
    response = client.post("/v1/events", data="[" + " " * (1 << 20) + "]", content_type="application/json")
    assert "the body is over 1048576 bytes" in error(response, 413, "PayloadTooLarge")


def test_events_chunked_body_over_the_limit_is_413(client: FlaskClient) -> None:
    """No Content-Length (chunked): the server terminates the stream (gunicorn sets
    wsgi.input_terminated) and the body is cut at the limit all the same."""
    body = io.BytesIO(b"[" + b" " * (1 << 20) + b"]")
    response = client.post("/v1/events", input_stream=body, content_type="application/json",
                           headers={"Transfer-Encoding": "chunked"}, environ_base={"wsgi.input_terminated": True})
    assert "the body is over 1048576 bytes" in error(response, 413, "PayloadTooLarge")


def test_events_without_an_event_stream_is_503(client: FlaskClient) -> None:
    """A store-injected app has no event stream: a valid request is refused as not ready."""
    message = error(client.post("/v1/events", json=event(1)), 503, "NotReady")
    assert message == "this server has no event stream configured"


def test_events_stream_outage_is_503(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    with_events(app, tmp_path, fail=redis.ConnectionError("connection refused"))
    message = error(app.test_client().post("/v1/events", json=event(1)), 503, "NotReady")
    assert message == "event stream unavailable (connection refused); retry the whole request later, nothing was lost"


def test_events_token(tmp_path: Path) -> None:
    app = make_app(tmp_path, ingest_token="s3cret")
    stream = with_events(app, tmp_path)
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        message = error(client.post("/v1/events", json=event(1), headers=headers), 401, "Unauthorized")
        assert "Authorization: Bearer" in message and "s3cret" not in message
    assert stream.stream == []
    ok = client.post("/v1/events", json=event(1), headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 202 and len(stream.stream) == 1


# --- health, unknown routes -----------------------------------------------------------------------


def test_live(client: FlaskClient) -> None:
    response = client.get("/health/live")
    assert response.status_code == 200 and response.get_json() == {"status": "live"}


def test_ready_with_a_model(client: FlaskClient) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    closed = {"state": "closed", "transitions": {}}
    assert response.get_json() == {"status": "ready", "model_version": "v1", "source": "store", "store": True,
                                   "breakers": {"model": closed, "redis": closed},
                                   "counts": {"model_path_abandoned": 0}}


def test_not_ready_without_a_model(tmp_path: Path) -> None:
    response = make_app(tmp_path, model=False).test_client().get("/health/ready")
    assert response.status_code == 503
    body = response.get_json()
    assert (body["status"], body["store"]) == ("not ready", True)
    assert body["reason"] == "no model version published yet: run `blink run-dag`"


def test_not_ready_says_why_a_published_version_is_not_served(tmp_path: Path) -> None:
    store = MemoryStore()
    store.publish("v9", [], [], {})  # published, but var/artifacts/v9 has no manifest
    response = make_app(tmp_path, store, model=False).test_client().get("/health/ready")
    assert response.status_code == 503
    assert response.get_json()["reason"].startswith("version v9 has no manifest in ")


class UnreachableStore(MemoryStore):
    def ping(self) -> bool:
        return False


def test_ready_but_degraded_when_the_store_is_unreachable(tmp_path: Path) -> None:
    response = make_app(tmp_path, UnreachableStore()).test_client().get("/health/ready")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["status"], body["store"]) == ("ready", False) and "store unreachable" in body["degraded"]


@pytest.mark.parametrize(("method", "url", "status", "name"), [
    ("GET", "/nope", 404, "Not Found"),
    ("GET", "/v1/recommendations/", 404, "Not Found"),  # an empty user id matches no route
    ("GET", "/v1/items/i3", 404, "Not Found"),
    ("GET", "/v1/events", 405, "Method Not Allowed"),
    ("POST", "/v1/recommendations/u0", 405, "Method Not Allowed"),
])
def test_http_errors_are_json(client: FlaskClient, method: str, url: str, status: int, name: str) -> None:
    assert error(client.open(url, method=method), status, name)


def test_trending_is_the_fallback_list(client: FlaskClient) -> None:
    r = client.get("/v1/trending?k=5")
    assert r.status_code == 200
    body = r.get_json()
    assert body["path"] == "trending" and body["model_version"] == "v1"
    assert [i["item_id"] for i in body["items"]] == [f"i{j}" for j in range(5)]  # small_model's trending
    fallback = client.get("/v1/recommendations/nobody?k=5").get_json()
    assert [i["item_id"] for i in fallback["items"]] == [i["item_id"] for i in body["items"]]
    assert client.get("/v1/trending?k=0").status_code == 400


def test_batch_recommendations_answer_each_user_as_get_would(client: FlaskClient) -> None:
    r = client.post("/v1/recommendations", json={"user_ids": ["u0", "u1", "nobody"], "k": 4})
    assert r.status_code == 200
    results = r.get_json()["results"]
    assert [a["user_id"] for a in results] == ["u0", "u1", "nobody"]
    for a in results:
        single = client.get(f"/v1/recommendations/{a['user_id']}?k=4").get_json()
        assert (a["path"], a["items"]) == (single["path"], single["items"])
        assert set(a) == ANSWER_KEYS


@pytest.mark.parametrize("body", [{"user_ids": []}, {"user_ids": "u0"}, {"user_ids": [1]},
                                  {"user_ids": ["u0"] * 101}, {"user_ids": ["u0"], "k": "5"}, ["u0"]])
def test_batch_recommendations_bad_body_is_400(client: FlaskClient, body: object) -> None:
    r = client.post("/v1/recommendations", json=body)
    assert r.status_code == 400
    message = r.get_json()["message"]
    assert "user_ids" in message or "k must" in message
