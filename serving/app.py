"""Flask app factory: wires config, store, model registry and router; handlers stay short."""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any
from urllib.parse import unquote_to_bytes

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter

from blink import config as config_mod
from blink import redis_client
from blink.candidates import SourceSizes
from blink.config import Config
from blink.errors import BadRequest, BlinkError, ConfigError, NotReady, Unauthorized
from blink.keys import Keys
from blink.session_store import RedisSessions
from blink.store import RecStore, RedisStore
from contracts.dlq import DeadLetterQueue
from serving import metrics, openapi
from serving.body import parse_json, read_limited
from serving.breaker import Breaker
from serving.event_log import EventLog
from serving.letter_budget import LetterBudget
from serving.openapi import respond
from serving.registry import Registry
from serving.rollback import Forbidden, rollback
from serving.router import Router
from serving.session_updater import SessionUpdater

log = logging.getLogger(__name__)
api = Blueprint("api", __name__)
MAX_BODY_BYTES = 1 << 20  # POST bodies, chunked or not
MAX_BATCH_USERS = openapi.MAX_BATCH_USERS
# Where the app starts without serving.ingest_token (a developer's machine, the test suite);
# every other BLINK_ENV (prod, bench, retail, movielens, one of your own) requires it.
TOKEN_OPTIONAL_ENVS = ("dev", "test")


def create_app(cfg: Config | None = None, store: RecStore | None = None, start_reload: bool = True,
               listening: bool = True) -> Flask:
    """The serving app. With no ``store`` it uses Redis (Blink's own or ``REDIS_URL``) for the
    recommendation store, the session state and the event stream; a given store (tests, a
    Redis-less single process) serves recommendations without the live-event features.
    ``listening=False`` (``blink recommend``: no port is opened) skips the ingest-token rule."""
    cfg = cfg or config_mod.load()
    if listening:
        require_ingest_token(cfg)
    events, sessions = None, None
    shared_redis = Breaker.for_redis()  # one per worker: reads and event appends
    if store is None:
        client = bounded_client(cfg)
        keys = Keys(cfg.redis.key_prefix)
        store = RedisStore(client, keys)
        sessions = RedisSessions(client, keys, cfg.session.ttl_s)
    registry = Registry(store, cfg.layout.artifacts, SourceSizes.from_config(cfg))
    if sessions is not None:
        updater = SessionUpdater(sessions, lambda: registry.pipeline.model if registry.pipeline else None)
        events = EventLog(sessions.r, sessions.k, DeadLetterQueue(cfg.layout.dlq), on_accepted=updater,
                          breaker=shared_redis, budget=letter_budget(cfg), max_events=cfg.serving.stream_max_events)
    if start_reload:
        registry.start(cfg.serving.reload_seconds)
    else:
        registry.refresh()
    app = Flask("blink")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES  # bounded request bodies
    app.extensions["blink"] = {"cfg": cfg, "store": store, "registry": registry, "events": events,
                               "router": Router(cfg.serving, store, registry, sessions=sessions,
                                                blend=cfg.session.blend, redis_breaker=shared_redis)}
    app.extensions["blink"]["openapi"] = openapi.document()
    app.url_map.converters["path"] = IdPath
    app.register_blueprint(api)
    app.register_error_handler(BlinkError, _blink_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


class IdPath(PathConverter):
    """werkzeug's ``path`` converter, but matching newlines too: an id with one (``u%0A``) reaches
    the handler and gets the id rule's 400, not a bare 404 for a route that exists."""

    regex = r"[^/](?s:.)*?"


def require_ingest_token(cfg: Config) -> None:
    """Outside ``TOKEN_OPTIONAL_ENVS`` the app does not start without ``serving.ingest_token``:
    anyone who reached POST /v1/events could then write events and join any session to any
    user's page (a login-merge)."""
    if cfg.serving.ingest_token is None and cfg.env not in TOKEN_OPTIONAL_ENVS:
        raise ConfigError(
            f"BLINK_ENV={cfg.env}: serving.ingest_token is required outside {' and '.join(TOKEN_OPTIONAL_ENVS)}: "
            "set BLINK_SERVING__INGEST_TOKEN to a long random secret (python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))') and have producers send 'Authorization: Bearer <token>'")


def letter_budget(cfg: Config) -> LetterBudget:
    s = cfg.serving
    return LetterBudget(s.dlq_letter_bytes, s.dlq_request_bytes, s.dlq_minute_bytes, s.dlq_minute_records)


def bounded_client(cfg: Config) -> redis.Redis:
    """Blink's Redis client for serving: connecting and every command bounded by
    ``redis.socket_timeout_ms``, never retried. The shared client's 1 s connect timeout is too
    long here: a hung (stopped) Redis fills its listen backlog, then every connect waits it out.
    With the Redis breaker (serving.breaker) a hung Redis costs a few timeouts, then is skipped."""
    client = redis_client.client(cfg)
    timeout_s = cfg.redis.socket_timeout_ms / 1000
    client.connection_pool.connection_kwargs["socket_connect_timeout"] = timeout_s
    client.set_retry(Retry(NoBackoff(), 0))
    if cfg.redis.socket_timeout_ms >= cfg.serving.deadline_ms:
        log.warning("redis.socket_timeout_ms (%d) is not below serving.deadline_ms (%g): a hung Redis "
                    "can cost a request its whole deadline", cfg.redis.socket_timeout_ms, cfg.serving.deadline_ms)
    return client


def _ext(name: str) -> Any:
    return current_app.extensions["blink"][name]


def _blink_error(exc: BlinkError) -> Any:
    return jsonify(exc.to_dict()), exc.status


def _http_error(exc: HTTPException) -> Any:
    """werkzeug's error as JSON, keeping its headers but the HTML type (a 405 lists ``Allow``, RFC 9110)."""
    headers = [(name, value) for name, value in exc.get_headers() if name.lower() != "content-type"]
    return jsonify({"error": exc.name, "message": exc.description}), exc.code, headers


def _unexpected_error(exc: Exception) -> Any:
    """A bug, not the client's fault: logged with its traceback here, never sent to the client."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    return jsonify({"error": "InternalError", "message": "an internal error occurred; it was logged, "
                                                        "the request can be retried"}), 500


@api.before_request
def _utf8_url() -> None:
    """Reject a URL that is not valid UTF-8 once percent-decoded (werkzeug would quietly turn the
    bad bytes into U+FFFD and serve user 'u\ufffd'); a percent-encoded lone surrogate is one."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")  # gunicorn, werkzeug
    try:
        if raw is not None:
            unquote_to_bytes(raw).decode("utf-8")
        else:  # a server that gives only the decoded path: WSGI hands its bytes over as latin-1
            request.environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
            unquote_to_bytes(request.environ.get("QUERY_STRING", "")).decode("utf-8")
    except UnicodeError:
        raise BadRequest("the URL is not valid UTF-8: percent-encode the UTF-8 bytes of each id") from None


@api.get("/v1/recommendations/<path:user_id>")
def recommendations(user_id: str) -> Any:
    k = _int_arg("k")
    router: Router = _ext("router")
    answer = router.recommend(user_id, k=k, device=request.args.get("device"),
                              session_id=request.args.get("session_id"))
    metrics.observe(answer, router.history_size(user_id))
    return respond(openapi.Recommendation, answer.to_dict())


@api.post("/v1/recommendations")
def recommendations_batch() -> Any:
    """Many users in one request (emails, notifications): each answered as GET would answer it."""
    body = parse_json(read_limited(request, MAX_BODY_BYTES), '{"user_ids": [...], "k": N}')
    try:
        asked = openapi.BatchRequest.model_validate(body, strict=True)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:3])
        raise BadRequest(f'send {{"user_ids": [1 to {MAX_BATCH_USERS} user id strings], "k": N}} ({problems})') \
            from None
    router: Router = _ext("router")
    results = []
    for user_id in asked.user_ids:
        answer = router.recommend(user_id, k=asked.k)
        metrics.observe(answer, router.history_size(user_id))
        results.append(answer.to_dict())
    return respond(openapi.BatchAnswer, {"results": results})


@api.get("/v1/trending")
def trending() -> Any:
    return respond(openapi.Trending, _ext("router").trending(k=_int_arg("k")))


@api.get("/v1/items/<path:item_id>/similar")
def similar(item_id: str) -> Any:
    return respond(openapi.Similar, _ext("router").similar(item_id, k=_int_arg("k")))


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        raise BadRequest(f"{name} must be an integer; got {raw!r}") from None


@api.post("/v1/events")
def post_events() -> Any:
    cfg: Config = _ext("cfg")
    token = cfg.serving.ingest_token
    authenticated = token is not None and hmac.compare_digest(request.headers.get("Authorization", "").encode(),
                                                              f"Bearer {token.get_secret_value()}".encode())
    if token is not None and not authenticated:
        raise Unauthorized("POST /v1/events needs the header 'Authorization: Bearer <serving.ingest_token>'")
    if not request.is_json:
        raise BadRequest("the body must be JSON: one event object, or a list of them")
    body = parse_json(read_limited(request, MAX_BODY_BYTES), "one event object, or a list of them")
    if not isinstance(body, (dict, list)):
        raise BadRequest("the body must be JSON: one event object, or a list of them")
    records = body if isinstance(body, list) else [body]
    if not 1 <= len(records) <= cfg.serving.max_batch:
        raise BadRequest(f"send 1 to {cfg.serving.max_batch} events per request; got {len(records)}")
    events: EventLog | None = _ext("events")
    if events is None:
        raise NotReady("this server has no event stream configured")
    started = time.perf_counter()
    # Login-merges only from an authenticated producer; with no token configured (dev, test only)
    # from anyone, as before: a documented risk (README "Resilience").
    result = events.accept(records, merge_users=authenticated or token is None)  # NotReady (503): nothing taken
    for outcome, n in (("accepted", result.accepted), ("duplicate", result.duplicates),
                       ("dead_lettered", result.rejected)):
        metrics.EVENTS.labels(outcome).inc(n)
    # 202: all taken (duplicates are accepted once); 400: per-record errors, valid ones kept.
    body = result.to_dict() | {"path": "events", "latency_ms": round((time.perf_counter() - started) * 1000, 3)}
    return respond(openapi.EventsAnswer, body, 202 if result.rejected == 0 else 400)


@api.get("/metrics")
def prometheus() -> Any:
    """Prometheus text exposition of every worker (see serving/metrics.py)."""
    pipe = _ext("router").registry.pipeline
    metrics.served(pipe.model.version if pipe else None, pipe.model.as_of_ms if pipe else None)
    body, content_type = metrics.exposition()
    return Response(body, mimetype=None, content_type=content_type)


@api.get("/health/live")
def live() -> Any:
    return respond(openapi.Live, {"status": "live"})


@api.get("/health/ready")
def ready() -> Any:
    """200 while a model version is served (from the store, or the newest loadable one on disk),
    with where it came from and what is degraded; 503 with the reason when none is."""
    registry: Registry = _ext("registry")
    router: Router = _ext("router")
    store_ok = _ext("store").ping()
    status = registry.status()
    breakers = {"model": router.breaker.snapshot(), "redis": router.redis.snapshot()}
    counts = _counts(router, _ext("events"))
    if registry.version is None:
        return respond(openapi.NotReadyAnswer, {"status": "not ready", "reason": status["problem"],
                                                "store": store_ok, "breakers": breakers, "counts": counts}, 503)
    body: dict[str, Any] = {"status": "ready", "model_version": registry.version, "source": status["source"],
                            "store": store_ok, "breakers": breakers, "counts": counts}
    degraded = [str(status["problem"])] if status["problem"] else []
    if not store_ok:
        degraded.append("store unreachable: head lists unavailable, serving tail and fallback")
    if degraded:
        body["degraded"] = "; ".join(degraded)
    return respond(openapi.Ready, body)


def _counts(router: Router, events: EventLog | None) -> dict[str, int]:
    """This worker's counters since it started: abandoned model paths, dead letters refused or cut."""
    counts = {"model_path_abandoned": router.hard_deadline.abandoned}
    if events is not None and events.budget is not None:
        counts |= {f"dead_letters_{name}": n for name, n in events.budget.counts.items()}
    if events is not None:
        counts["events_refused_stream_full"] = events.refused_full
    return counts


@api.get("/openapi.json")
def openapi_document() -> Any:
    """The OpenAPI 3.1 document, generated from the models the handlers answer through."""
    return jsonify(_ext("openapi"))


@api.get("/docs")
def docs() -> Any:
    """The same document as a plain HTML page (no scripts, no CDN: works offline)."""
    return Response(openapi.docs_page(_ext("openapi")), content_type="text/html; charset=utf-8")


@api.post("/admin/rollback")
def admin_rollback() -> Any:
    """Point the store at an older complete version; every worker swaps to it on its next poll."""
    cfg: Config = _ext("cfg")
    token = cfg.serving.ingest_token
    if token is None:
        raise Forbidden("the admin API is disabled: set BLINK_SERVING__INGEST_TOKEN to enable it, "
                        "or use `blink rollback VERSION` on the host")
    if not hmac.compare_digest(request.headers.get("Authorization", "").encode(),
                               f"Bearer {token.get_secret_value()}".encode()):
        raise Unauthorized("POST /admin/rollback needs the header 'Authorization: Bearer <serving.ingest_token>'")
    body = parse_json(read_limited(request, 4096), '{"version": "..."}')
    try:
        wanted = openapi.RollbackRequest.model_validate(body, strict=True)
    except ValidationError:
        raise BadRequest('send {"version": "<a version `blink versions` lists>"}') from None
    previous = rollback(_ext("store"), cfg.layout.artifacts, wanted.version)
    log.warning("admin rollback: the store now names %s (was %s)", wanted.version, previous)
    return respond(openapi.RollbackAnswer, {
        "version": wanted.version, "previous": previous,
        "note": f"workers swap to it within serving.reload_seconds ({cfg.serving.reload_seconds:g} s)"})
