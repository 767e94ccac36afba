"""Prometheus metrics of the serving API (prometheus-client), served at ``GET /metrics``.

Under gunicorn every worker is its own process, so the metrics use prometheus-client's
multiprocess mode: conf/gunicorn.conf.py points ``PROMETHEUS_MULTIPROC_DIR`` at an emptied
``var/prometheus`` before any worker starts, each worker writes its samples there, and whichever
worker answers ``/metrics`` aggregates all of them. Without that variable (tests, ``blink
recommend``) the default in-process registry is used.

Latency histograms go from 0.25 ms to 1 s so p99 and p99.9 can be read per path, per stage and
per size of the user's history (power users are where the tail hides). Label values come from
small fixed sets only: a fallback's free-text reason is cut to its kind before it is a label.
docker/grafana/blink.json charts these; a test checks every query names a metric exported here.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

if TYPE_CHECKING:
    from serving.router import Answer

BUCKETS_S = (0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
             0.15, 0.25, 0.5, 1.0)
HISTORY_EDGES = (0, 10, 100, 1000)  # history label: "0", "1-10", "11-100", "101-1000", "1001+"

REQUESTS = Histogram("blink_request_seconds", "Server time per answer, by path and the user's history size",
                     ["path", "history"], buckets=BUCKETS_S)
STAGES = Histogram("blink_stage_seconds", "Server time per pipeline stage (store_read, retrieval, ranking, ...)",
                   ["stage"], buckets=BUCKETS_S)
FALLBACKS = Counter("blink_fallbacks_total", "Answers from the fallback, by kind of reason", ["reason"])
EVENTS = Counter("blink_events_total", "Events posted to /v1/events, by outcome", ["outcome"])
REDIS_ERRORS = Counter("blink_redis_errors_total", "Redis calls from serving that failed or timed out")
BREAKER_OPEN = Gauge("blink_breaker_open", "1 while a breaker is open (per worker, max over workers)",
                     ["breaker"], multiprocess_mode="livemax")
BREAKER_TRANSITIONS = Counter("blink_breaker_transitions_total", "Breaker state changes", ["breaker", "to"])
MODEL_VERSION = Gauge("blink_model_version_info", "1 for the model version a worker serves",
                      ["version"], multiprocess_mode="livemax")
MODEL_AGE = Gauge("blink_model_age_seconds", "Seconds since the served version's data cut-off (as of a scrape)",
                  multiprocess_mode="livemax")


def history_label(n: int) -> str:
    """The bucket of a history size, as a label."""
    lower = 0
    for edge in HISTORY_EDGES:
        if n <= edge:
            return str(edge) if edge == lower else f"{lower}-{edge}"
        lower = edge + 1
    return f"{HISTORY_EDGES[-1] + 1}+"


def reason_kind(reason: str) -> str:
    """A fallback reason without its details ("model path failed: <error>" -> "model path failed")."""
    return reason.split(":", 1)[0].strip()[:40] or "unknown"


def observe(answer: Answer, history: int) -> None:
    """Record one recommendation answer: its latency, stages and, for a fallback, why."""
    REQUESTS.labels(answer.path, history_label(history)).observe(answer.latency_ms / 1000)
    for stage, ms in answer.stages_ms.items():
        STAGES.labels(stage).observe(ms / 1000)
    if answer.path == "fallback":
        FALLBACKS.labels(reason_kind(answer.reason or "")).inc()


def served(version: str | None, as_of_ms: int | None, previous: str | None = None) -> None:
    """This worker serves ``version`` (call on every swap and before a scrape)."""
    if previous and previous != version:
        MODEL_VERSION.labels(previous).set(0)
    if version is not None:
        MODEL_VERSION.labels(version).set(1)
    if as_of_ms is not None:
        MODEL_AGE.set(max(0.0, time.time() - as_of_ms / 1000))


def exposition() -> tuple[bytes, str]:
    """The text exposition of every worker's metrics (or this process's, outside gunicorn)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
