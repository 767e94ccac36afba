"""The API's shapes as pydantic models, and the OpenAPI 3.1 document generated from them.

Handlers pass every JSON answer through ``respond(Model, body)``, so an answer that drifts from its
model fails loudly (a 500 in production, a failed test before that) instead of silently
differing from the document served at ``/openapi.json``. The event body is described by the
data contract itself (``contracts.validation.fields``), the rule ``POST /v1/events`` checks.
``ENDPOINTS`` is the one table of routes, statuses and models; tests walk it.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from flask import Response, jsonify
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_serializer
from pydantic.json_schema import models_json_schema

from contracts.validation import fields as contract_fields
from serving.router import REQUEST_DEVICES

REF = "#/components/schemas/{model}"
MAX_BATCH_USERS = 100  # users per POST /v1/recommendations: each is a full answer under its own deadline


class Shape(BaseModel):
    """An answer: unknown keys are an error, so a handler cannot add one without its model."""

    model_config = ConfigDict(extra="forbid")


class ScoredItem(Shape):
    item_id: str
    score: float


class Recommendation(Shape):
    """One user's answer (GET /v1/recommendations/<user_id>, and each batch result)."""

    user_id: str
    items: list[ScoredItem]
    path: Literal["head", "session", "tail", "fallback"]
    model_version: str | None
    reason: str | None = Field(description="why the fallback answered (null on other paths)")
    latency_ms: float
    stages_ms: dict[str, float]


class BatchRequest(BaseModel):
    user_ids: list[str] = Field(min_length=1, max_length=MAX_BATCH_USERS)
    k: int | None = None


class BatchAnswer(Shape):
    results: list[Recommendation]


class Trending(Shape):
    items: list[ScoredItem]
    model_version: str | None
    path: Literal["trending"]


class Similar(Shape):
    item_id: str
    items: list[ScoredItem]
    path: Literal["precomputed", "realtime"]
    model_version: str


class RecordErrors(Shape):
    index: int
    event_id: JsonValue = Field(description="the record's event_id as sent (any JSON value, or null)")
    errors: list[str]

    @field_serializer("event_id")
    def _strict_json(self, value: JsonValue) -> JsonValue:
        """Python's parser takes NaN and Infinity; echoed as sent they would make the answer invalid JSON."""
        return _finite(value)


def _finite(value: JsonValue) -> JsonValue:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


class DroppedFields(Shape):
    index: int | None
    event_id: str
    fields: list[str]


class EventsAnswer(Shape):
    """202 when every record was taken; 400 with per-record ``errors`` (the valid ones kept)."""

    accepted: int
    duplicates: int
    rejected: int
    errors: list[RecordErrors]
    dropped_fields: list[DroppedFields]
    path: Literal["events"]
    latency_ms: float


class Error(Shape):
    """Every error: the error class and a message that says what to do."""

    error: str
    message: str


class Live(Shape):
    status: Literal["live"]


class BreakerState(Shape):
    state: str
    transitions: dict[str, int]


class Ready(Shape):
    status: Literal["ready"]
    model_version: str
    source: Literal["store", "disk"] | None
    store: bool
    breakers: dict[str, BreakerState]
    counts: dict[str, int]
    degraded: str | None = Field(default=None, description="present only when something is degraded")


class NotReadyAnswer(Shape):
    status: Literal["not ready"]
    reason: str | None
    store: bool
    breakers: dict[str, BreakerState]
    counts: dict[str, int]


class RollbackRequest(BaseModel):
    version: str = Field(min_length=1, max_length=128)


class RollbackAnswer(Shape):
    version: str = Field(description="the version the store's pointer now names")
    previous: str | None
    note: str


def respond(model: type[Shape], body: dict[str, Any], status: int = 200) -> Response:
    """The JSON response of ``body`` checked against ``model`` (a ``ValidationError`` on drift); keys
    given as null stay null, optional ones not given are left out. Written by Flask's JSON (ASCII
    escapes), not pydantic's: an echoed lone surrogate (``"\\ud800"``) must not fail the answer."""
    response = jsonify(model.model_validate(body).model_dump(mode="json", exclude_unset=True))
    response.status_code = status
    return response


# --- the route table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query"]
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # OpenAPI form: /v1/items/{item_id}/similar
    summary: str
    responses: dict[int, type[BaseModel] | str]  # a model, or a media type for non-JSON answers
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | str | None = None  # a model, or "Event" (the contract's schema)
    auth: bool = False
    tags: tuple[str, ...] = field(default=("recommendations",))


K = Param("k", "query", {"type": "integer", "minimum": 1}, "list length (1..serving.max_k; default serving.default_k)")
ID = {"type": "string", "minLength": 1, "maxLength": 128}
E = Error
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("get", "/v1/recommendations/{user_id}", "One user's recommendations",
             {200: Recommendation, 400: E},
             (Param("user_id", "path", ID), K, Param("device", "query", {"type": "string", "enum": [*REQUEST_DEVICES]}),
              Param("session_id", "query", ID))),
    Endpoint("post", "/v1/recommendations", "Many users at once, each answered as the GET would",
             {200: BatchAnswer, 400: E, 413: E}, body=BatchRequest),
    Endpoint("get", "/v1/trending", "The served version's popular-now list", {200: Trending, 400: E}, (K,)),
    Endpoint("get", "/v1/items/{item_id}/similar", "Items similar to one item",
             {200: Similar, 400: E, 404: E, 503: E}, (Param("item_id", "path", ID), K)),
    Endpoint("post", "/v1/events", "Live events (one object or a list), checked against the data contract",
             {202: EventsAnswer, 400: EventsAnswer, 401: E, 413: E, 429: E, 503: E}, body="Event",
             tags=("events",)),
    Endpoint("get", "/health/live", "The process runs", {200: Live}, tags=("health",)),
    Endpoint("get", "/health/ready", "A model version is served, and what is degraded",
             {200: Ready, 503: NotReadyAnswer}, tags=("health",)),
    Endpoint("get", "/metrics", "Prometheus text exposition of every worker", {200: "text/plain"},
             tags=("health",)),
    Endpoint("post", "/admin/rollback", "Point serving at an older published version",
             {200: RollbackAnswer, 400: E, 401: E, 403: E, 404: E, 409: E, 503: E}, body=RollbackRequest,
             auth=True, tags=("admin",)),
    Endpoint("get", "/openapi.json", "This document", {200: "application/json"}, tags=("docs",)),
    Endpoint("get", "/docs", "This document as a page", {200: "text/html"}, tags=("docs",)),
)
# 400 on a POST /v1/events body that is not JSON at all (not even a list) is an Error, not an
# EventsAnswer: both are allowed there.
ALSO: dict[tuple[str, int], type[BaseModel]] = {("/v1/events", 400): Error}
# Answers gunicorn itself gives on any route, before the app sees the request (so not JSON): a
# request line (method, path and query) over its limit_request_line. Found by schemathesis.
SERVER_ANSWERS: dict[int, str] = {
    414: "URI Too Long: the request line is over gunicorn's limit_request_line (4094 bytes); an HTML page"}


def event_schema() -> dict[str, Any]:
    """JSON Schema of one event, from the contract's latest Avro schema (what the handler checks)."""
    props: dict[str, Any] = {}
    for f in contract_fields("event"):
        main = _json_type(f.main)
        props[f.name] = {"anyOf": [main, {"type": "null"}]} if f.nullable else main
        if f.default is not None:
            props[f.name]["default"] = f.default
    required = [f.name for f in contract_fields("event") if f.required]
    return {"type": "object", "title": "Event", "properties": props, "required": required,
            "description": "Fields the contract does not define are dropped and named in dropped_fields."}


def _json_type(avro: Any) -> dict[str, Any]:
    if isinstance(avro, dict):
        kind = avro.get("type")
        if kind == "enum":
            return {"type": "string", "enum": list(avro["symbols"])}
        if kind == "map":
            return {"type": "object", "additionalProperties": _json_type(avro["values"])}
        if kind == "array":
            return {"type": "array", "items": _json_type(avro["items"])}
        return _json_type(kind)
    return {"string": {"type": "string"}, "long": {"type": "integer"}, "int": {"type": "integer"},
            "double": {"type": "number"}, "float": {"type": "number"}, "boolean": {"type": "boolean"}}.get(
        str(avro), {})


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route in ``ENDPOINTS``."""
    models = sorted({m for e in ENDPOINTS for m in [*e.responses.values(), e.body, *ALSO.values()]
                     if isinstance(m, type)}, key=lambda m: m.__name__)
    _, defs = models_json_schema([(m, "serialization" if issubclass(m, Shape) else "validation") for m in models],
                                 ref_template=REF)
    schemas = dict(defs.get("$defs", {}))
    schemas["Event"] = event_schema()
    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        op: dict[str, Any] = {"summary": e.summary, "operationId": f"{e.method}_{_slug(e.path)}",
                              "tags": list(e.tags), "responses": {}}
        if e.params:
            op["parameters"] = [{"name": p.name, "in": p.where, "required": p.where == "path", "schema": p.schema,
                                 **({"description": p.description} if p.description else {})} for p in e.params]
        if e.body == "Event":
            one = {"$ref": REF.format(model="Event")}
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [one, {"type": "array", "items": one, "minItems": 1}]}}}}
        elif isinstance(e.body, type):
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": REF.format(model=e.body.__name__)}}}}
        if e.auth or e.path == "/v1/events":
            op["security"] = [{"bearer": []}]
        for status, answer in e.responses.items():
            op["responses"][str(status)] = _response(e.path, status, answer)
        for status, description in SERVER_ANSWERS.items():
            op["responses"][str(status)] = {"description": description,
                                            "content": {"text/html": {"schema": {"type": "string"}}}}
        paths.setdefault(e.path, {})[e.method] = op
    return {"openapi": "3.1.0",
            "info": {"title": "Blink", "version": "1",
                     "description": "Real-time recommendations. Errors are JSON {error, message}."},
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "serving.ingest_token (POST /v1/events when set; /admin/* always)"}}}}


def _response(path: str, status: int, answer: type[BaseModel] | str) -> dict[str, Any]:
    if isinstance(answer, str):  # a media type: this document (an object), or text
        kind = "object" if answer == "application/json" else "string"
        return {"description": answer, "content": {answer: {"schema": {"type": kind}}}}
    refs = [{"$ref": REF.format(model=answer.__name__)}]
    if (path, status) in ALSO:
        refs.append({"$ref": REF.format(model=ALSO[path, status].__name__)})
    schema = refs[0] if len(refs) == 1 else {"anyOf": refs}
    return {"description": (answer.__doc__ or answer.__name__).strip().splitlines()[0],
            "content": {"application/json": {"schema": schema}}}


def model_for(path: str, status: int) -> tuple[type[BaseModel], ...]:
    """The models an answer of ``status`` on ``path`` (OpenAPI form) may match."""
    for e in ENDPOINTS:
        if e.path == path and status in e.responses:
            answer = e.responses[status]
            if isinstance(answer, type):
                return (answer, *([ALSO[path, status]] if (path, status) in ALSO else []))
    return ()


def _slug(path: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in path).strip("_")


def docs_page(doc: dict[str, Any]) -> str:
    """A self-contained HTML page of ``doc``: no script, no CDN, readable offline."""
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = ", ".join(f"{p['name']} ({p['in']})" for p in op.get("parameters", []))
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            answers = "".join(f"<li><b>{s}</b> {html.escape(_schema_name(r))}</li>" for s, r in op["responses"].items())
            rows.append(f"<tr><td><code>{method.upper()} {html.escape(path)}</code></td>"
                        f"<td>{html.escape(op['summary'])}{' 🔒' if 'security' in op else ''}</td>"
                        f"<td>{html.escape(params)}</td><td>{html.escape(_name(body)) if body else ''}</td>"
                        f"<td><ul>{answers}</ul></td></tr>")
    schemas = "".join(f"<h3 id='{html.escape(name)}'>{html.escape(name)}</h3><pre>"
                      f"{html.escape(json.dumps(s, indent=1))}</pre>"
                      for name, s in doc["components"]["schemas"].items())
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Blink API</title><style>"
            "body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px;vertical-align:top}"
            "table{border-collapse:collapse}pre{background:#f6f6f6;padding:8px}</style></head><body>"
            f"<h1>{html.escape(doc['info']['title'])} API</h1><p>{html.escape(doc['info']['description'])} "
            "Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>"
            "<table><tr><th>route</th><th>what</th><th>parameters</th><th>body</th><th>answers</th></tr>"
            f"{''.join(rows)}</table><h2>Schemas</h2>{schemas}</body></html>")


def _schema_name(response: dict[str, Any]) -> str:
    content = response.get("content", {})
    media, spec = next(iter(content.items())) if content else ("", {})
    return _name(spec.get("schema", {})) if media == "application/json" and "$ref" in json.dumps(spec) else media


def _name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_name(s) for s in schema[key])
    if schema.get("type") == "array":
        return f"[{_name(schema.get('items', {}))}]"
    return str(schema.get("type", ""))
