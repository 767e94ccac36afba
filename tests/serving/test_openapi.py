"""The OpenAPI document (serving/openapi.py) against real answers, through the Flask test client:
every endpoint, good and bad inputs, each answer validated with jsonschema against the schema
the served /openapi.json gives for its path, method and status. A handler that drifts from its
model fails here (and, at run time, in ``shape``)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from jsonschema import Draft202012Validator
from pydantic import ValidationError
from werkzeug.test import TestResponse

from blink.store import MemoryStore
from serving import openapi
from tests.serving.model_files import write_version
from tests.serving.test_app import event, make_app, with_events

JSON_ERROR_KEYS = {"error", "message"}


def conforms(doc: dict[str, Any], method: str, route: str, status: int, content_type: str, body: bytes) -> None:
    """Fail unless ``status`` is documented for ``method route`` and ``body`` matches its schema."""
    responses = doc["paths"][route][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {route} answered {status}, not documented: {body[:300]!r}"
    content = responses[str(status)]["content"]
    media = content_type.split(";")[0].strip()
    assert media in content, f"{method.upper()} {route} {status}: {media} is not {list(content)}"
    if media != "application/json":
        return
    schema = {**content[media]["schema"], "components": doc["components"]}  # refs resolve against the root
    parsed = json.loads(body, parse_constant=lambda c: pytest.fail(f"{c} is not JSON: {body[:300]!r}"))
    errors = sorted(Draft202012Validator(schema).iter_errors(parsed), key=str)
    assert not errors, f"{method.upper()} {route} {status}: {errors[0].message[:300]} in {body[:300]!r}"


def check(app: Flask, method: str, url: str, route: str, expect: int, **kwargs: Any) -> TestResponse:
    """Send one request and validate its answer against the app's own /openapi.json."""
    client = app.test_client()
    doc = client.get("/openapi.json").get_json()
    response = client.open(url, method=method.upper(), **kwargs)
    assert response.status_code == expect, response.get_data(as_text=True)[:500]
    conforms(doc, method, route, response.status_code, response.content_type, response.get_data())
    return response


REC = "/v1/recommendations/{user_id}"
SIM = "/v1/items/{item_id}/similar"


@pytest.mark.parametrize(("url", "expect"), [
    ("/v1/recommendations/u0?k=5&device=mobile", 200), ("/v1/recommendations/stranger", 200),
    ("/v1/recommendations/u0?k=0", 400), ("/v1/recommendations/u0?k=abc", 400),
    ("/v1/recommendations/u0?device=toaster", 400), ("/v1/recommendations/u%01x", 400),
    ("/v1/recommendations/" + "x" * 200, 400), ("/v1/recommendations/u%ED%A0%80", 400),
    ("/v1/recommendations/new%0Aline", 400),  # a newline in an id: the id rule's 400, not a routing 404
])
def test_recommendations_conform(tmp_path: Path, url: str, expect: int) -> None:
    check(make_app(tmp_path), "get", url, REC, expect)


def test_answers_without_a_model_conform(tmp_path: Path) -> None:
    app = make_app(tmp_path, model=False)
    assert check(app, "get", "/v1/recommendations/u0", REC, 200).get_json()["model_version"] is None
    check(app, "get", "/v1/trending", "/v1/trending", 200)
    check(app, "get", "/v1/items/i1/similar", SIM, 503)
    check(app, "get", "/health/ready", "/health/ready", 503)


@pytest.mark.parametrize(("body", "expect"), [
    ({"user_ids": ["u0", "u1", "nobody"], "k": 4}, 200), ({"user_ids": ["u0"]}, 200),
    ({"user_ids": []}, 400), ({"user_ids": "u0"}, 400), ({"user_ids": [1]}, 400), ({"user_ids": ["u0"] * 101}, 400),
    ({"user_ids": ["u0"], "k": "5"}, 400), ({"user_ids": ["u0"], "k": True}, 400), (["u0"], 400),
    ({"user_ids": ["u0"], "k": 10_000}, 400), ({"user_ids": ["\x00"]}, 400),
])
def test_batch_conforms(tmp_path: Path, body: object, expect: int) -> None:
    check(make_app(tmp_path), "post", "/v1/recommendations", "/v1/recommendations", expect, json=body)


def test_batch_body_over_the_limit_conforms(tmp_path: Path) -> None:
    check(make_app(tmp_path), "post", "/v1/recommendations", "/v1/recommendations", 413,
          data='{"user_ids": [' + " " * (1 << 20) + "]}", content_type="application/json")


@pytest.mark.parametrize(("url", "route", "expect"), [
    ("/v1/trending?k=3", "/v1/trending", 200), ("/v1/trending?k=0", "/v1/trending", 400),
    ("/v1/trending?k=x", "/v1/trending", 400), ("/v1/items/i3/similar?k=4", SIM, 200),
    ("/v1/items/nope/similar", SIM, 404), ("/v1/items/i3/similar?k=-1", SIM, 400),
    ("/v1/items/i%0A3/similar", SIM, 400),
    ("/health/live", "/health/live", 200), ("/health/ready", "/health/ready", 200),
])
def test_reads_conform(tmp_path: Path, url: str, route: str, expect: int) -> None:
    check(make_app(tmp_path), "get", url, route, expect)


def test_precomputed_similar_and_head_answers_conform(tmp_path: Path) -> None:
    store = MemoryStore()
    store.publish("v1", [("u0", [("i9", 2.0)])], [], {}, similar=[("i3", [("i4", 0.5)])])
    app = make_app(tmp_path, store)
    assert check(app, "get", "/v1/items/i3/similar", SIM, 200).get_json()["path"] == "precomputed"
    assert check(app, "get", "/v1/recommendations/u0", REC, 200).get_json()["path"] == "head"


def test_metrics_is_documented_as_text(tmp_path: Path) -> None:
    check(make_app(tmp_path), "get", "/metrics", "/metrics", 200)


EV = "/v1/events"


def test_events_answers_conform(tmp_path: Path) -> None:
    app = make_app(tmp_path, ingest_token="s3cret", dlq_minute_records=3)
    with_events(app, tmp_path)
    auth = {"Authorization": "Bearer s3cret"}
    check(app, "post", EV, EV, 202, json=[event(1), event(2), event(2, colour="red")], headers=auth)
    check(app, "post", EV, EV, 400, json=[event(3), event(4, event_type="clik"), "no", {"event_id": [1]}],
          headers=auth)
    check(app, "post", EV, EV, 400, data="{not json", content_type="application/json", headers=auth)
    check(app, "post", EV, EV, 400, data="[" * 50 + "]" * 50, content_type="application/json", headers=auth)
    check(app, "post", EV, EV, 401, json=event(5))
    check(app, "post", EV, EV, 401, json=event(5), headers={"Authorization": "Bearer nope"})
    check(app, "post", EV, EV, 413, data="[" + " " * (1 << 20) + "]", content_type="application/json", headers=auth)
    check(app, "post", EV, EV, 413, input_stream=io.BytesIO(b"[" + b" " * (1 << 20) + b"]"),
          content_type="application/json", headers={**auth, "Transfer-Encoding": "chunked"},
          environ_base={"wsgi.input_terminated": True})
    check(app, "post", EV, EV, 429, json=[event(6, event_type="x"), event(7, event_type="x")], headers=auth)


def test_events_answers_are_strict_json_even_for_nan_ids(tmp_path: Path) -> None:
    """Python's parser accepts NaN / Infinity; the answer echoing such an event_id must still be JSON
    (``conforms`` parses strictly)."""
    app = make_app(tmp_path)
    with_events(app, tmp_path)
    for raw in ('{"event_id": NaN}', '[{"event_id": [Infinity, {"a": -Infinity}]}]', '{"event_id": 1e999}'):
        check(app, "post", EV, EV, 400, data=raw, content_type="application/json")


def test_events_unavailable_conform(tmp_path: Path) -> None:
    check(make_app(tmp_path), "post", EV, EV, 503, json=event(1))  # no stream configured
    app = make_app(tmp_path)
    with_events(app, tmp_path, fail=redis.ConnectionError("refused"))  # an outage, injected
    check(app, "post", EV, EV, 503, json=event(1))


# --- the document itself --------------------------------------------------------------------------


def test_document_is_openapi_3_1_and_covers_every_route(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    doc = app.test_client().get("/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # each component is a valid JSON Schema
    routed = {(m.lower(), re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)) for rule in app.url_map.iter_rules()
              if rule.endpoint != "static" for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routed == documented
    event_props = doc["components"]["schemas"]["Event"]["properties"]
    assert {"event_id", "session_id", "event_type", "context", "referrer"} <= set(event_props)  # the contract's


def test_docs_page_renders_offline(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    page = check(app, "get", "/docs", "/docs", 200).get_data(as_text=True)
    assert "<script" not in page and "http://" not in page and "https://" not in page  # nothing fetched
    for route in app.test_client().get("/openapi.json").get_json()["paths"]:
        assert route in page


def test_a_handler_drifting_from_its_model_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer with a key its model does not have is an error, not a silently different API."""
    app = make_app(tmp_path)
    router = app.extensions["blink"]["router"]
    original = router.trending
    monkeypatch.setattr(router, "trending", lambda k=None: original(k) | {"extra": 1})
    response = app.test_client().get("/v1/trending")  # logged with its traceback, never half-sent
    assert response.status_code == 500 and response.get_json()["error"] == "InternalError"
    with pytest.raises(ValidationError, match="extra"):
        openapi.respond(openapi.Trending, original(3) | {"extra": 1})


# --- POST /admin/rollback -------------------------------------------------------------------------

ADMIN = "/admin/rollback"


def rollback_app(tmp_path: Path, **serving: Any) -> tuple[Flask, MemoryStore]:
    """v1 and v2 complete on disk and in the store (v2 served), v3 on disk without a manifest."""
    artifacts = tmp_path / "var" / "artifacts"
    write_version(artifacts, "v1", published_at_ms=1000, checksums=True)
    write_version(artifacts, "v2", published_at_ms=2000, checksums=True)
    (artifacts / "v3").mkdir()
    store = MemoryStore()
    store.publish("v1", [], [], {"version": "v1"})
    store.publish("v2", [], [], {"version": "v2"})
    return make_app(tmp_path, store, **serving), store


def test_admin_rollback_is_disabled_without_a_token(tmp_path: Path) -> None:
    app, store = rollback_app(tmp_path)
    message = check(app, "post", ADMIN, ADMIN, 403, json={"version": "v1"}).get_json()["message"]
    assert "BLINK_SERVING__INGEST_TOKEN" in message and store.current_version() == "v2"


def test_admin_rollback_needs_the_token(tmp_path: Path) -> None:
    app, store = rollback_app(tmp_path, ingest_token="s3cret")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        check(app, "post", ADMIN, ADMIN, 401, json={"version": "v1"}, headers=headers)
    assert store.current_version() == "v2"


def test_admin_rollback_switches_to_a_complete_version_and_refuses_the_rest(tmp_path: Path) -> None:
    app, store = rollback_app(tmp_path, ingest_token="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    for body, status in (({"version": "v9"}, 404), ({"version": "v3"}, 409), ({"version": 1}, 400),
                         ({}, 400), (["v1"], 400), ({"version": ""}, 400)):
        check(app, "post", ADMIN, ADMIN, status, json=body, headers=auth)
        assert store.current_version() == "v2"
    answer = check(app, "post", ADMIN, ADMIN, 200, json={"version": "v1"}, headers=auth).get_json()
    assert (answer["version"], answer["previous"], store.current_version()) == ("v1", "v2", "v1")
    registry = app.extensions["blink"]["registry"]
    registry.pipeline = None  # as a worker whose next poll sees the switched pointer
    assert registry.refresh() and registry.version == "v1"
    corrupt = tmp_path / "var" / "artifacts" / "v2" / "embeddings.npz"
    corrupt.write_bytes(corrupt.read_bytes()[:100])
    message = check(app, "post", ADMIN, ADMIN, 409, json={"version": "v2"}, headers=auth).get_json()["message"]
    assert "checksum" in message and store.current_version() == "v1"
