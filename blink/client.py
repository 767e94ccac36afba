"""A small typed Python client for Blink's HTTP API, with timeouts and retries.

    from blink.client import BlinkClient
    blink = BlinkClient("http://127.0.0.1:8080", token="…")      # token: only for POST /v1/events
    page = blink.recommend("u42", k=20, session_id="s-1")        # {"items": [...], "path": ..., ...}
    blink.send_events([{"event_id": "e1", "user_id": "u42", ...}])
    blink.trending(k=10); blink.similar("i7", k=10); blink.recommend_many(["u1", "u2"], k=5)

Every call has a timeout (``timeout_s``). Connection errors and 502/503/504 answers are retried
``retries`` times with exponential backoff: reads are idempotent, and so is posting events
(an event id is accepted once; a refused batch wrote nothing). A 4xx is not retried: it raises
:class:`BlinkHTTPError` carrying the server's message, which says what to fix.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import requests

RETRY_STATUS = (502, 503, 504)


class Item(TypedDict):
    item_id: str
    score: float


class Answer(TypedDict):
    user_id: str
    items: list[Item]
    path: str  # head | session | tail | fallback
    reason: str | None
    model_version: str | None
    latency_ms: float
    stages_ms: dict[str, float]


class EventsResult(TypedDict, total=False):
    accepted: int
    duplicates: int
    rejected: int
    errors: list[dict[str, Any]]
    dropped_fields: list[Any]


class BlinkHTTPError(Exception):
    """A non-2xx answer (after retries): ``status``, and the server's ``body`` with its message."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        self.status, self.body = status, dict(body)
        super().__init__(f"HTTP {status}: {body.get('message') or body.get('error') or body}")


class BlinkClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8080", token: str | None = None,
                 timeout_s: float = 2.0, retries: int = 2, backoff_s: float = 0.05,
                 session: requests.Session | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.token, self.timeout_s, self.retries, self.backoff_s = token, timeout_s, retries, backoff_s
        self.http = session or requests.Session()

    def recommend(self, user_id: str, k: int | None = None, device: str | None = None,
                  session_id: str | None = None) -> Answer:
        """One user's page (GET /v1/recommendations/<user_id>)."""
        params = {"k": k, "device": device, "session_id": session_id}
        return self._call("GET", f"/v1/recommendations/{requests.utils.quote(user_id, safe='')}",  # type: ignore[no-any-return]
                          params={p: v for p, v in params.items() if v is not None})

    def recommend_many(self, user_ids: Sequence[str], k: int | None = None) -> list[Answer]:
        """Many users at once (POST /v1/recommendations, ≤ 100 per call)."""
        body = {"user_ids": list(user_ids), **({"k": k} if k is not None else {})}
        return self._call("POST", "/v1/recommendations", json=body)["results"]  # type: ignore[no-any-return]

    def trending(self, k: int | None = None) -> dict[str, Any]:
        return self._call("GET", "/v1/trending", params={"k": k} if k is not None else {})  # type: ignore[no-any-return]

    def similar(self, item_id: str, k: int | None = None) -> dict[str, Any]:
        return self._call("GET", f"/v1/items/{requests.utils.quote(item_id, safe='')}/similar",  # type: ignore[no-any-return]
                          params={"k": k} if k is not None else {})

    def send_events(self, events: Sequence[Mapping[str, Any]]) -> EventsResult:
        """Post events (202: all taken). Raises BlinkHTTPError on 400 with the per-record errors
        in ``.body["errors"]`` — the valid records of that batch were kept."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return self._call("POST", "/v1/events", json=list(events), headers=headers)  # type: ignore[no-any-return]

    def ready(self) -> dict[str, Any]:
        """GET /health/ready (raises BlinkHTTPError 503 with the reason while not ready)."""
        return self._call("GET", "/health/ready")  # type: ignore[no-any-return]

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                r = self.http.request(method, self.base + path, timeout=self.timeout_s, **kwargs)
            except (requests.ConnectionError, requests.Timeout):
                if last:
                    raise
            else:
                if r.status_code < 400:
                    return r.json()
                if r.status_code not in RETRY_STATUS or last:
                    try:
                        body = r.json()
                    except ValueError:
                        body = {"message": r.text[:500]}
                    raise BlinkHTTPError(r.status_code, body if isinstance(body, dict) else {"message": body})
            time.sleep(self.backoff_s * 2 ** attempt)
        raise AssertionError("unreachable")  # the loop returns or raises
