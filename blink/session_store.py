"""Where session state lives between requests: Redis in production, memory in tests.

A session's state is the GRU hidden state after its last event, the items it touched
(filtered from every answer), its user (set at login, which merges an anonymous session
into the user) and the encoder version that produced the state. Each event applies one
GRU step to the stored state: the history is never re-read. Keys expire after the
session's idle TTL; ``user_session:<user>`` points a user at their live session.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import redis

from blink.keys import SESSION, USER_SESSION, Keys

MAX_ITEMS = 100


@dataclass
class SessionState:
    h: np.ndarray
    items: list[str] = field(default_factory=list)
    n: int = 0
    user_id: str | None = None
    version: str = ""
    updated_ms: int = 0

    def encode(self) -> dict[str, bytes | str]:
        return {"h": self.h.astype(np.float32).tobytes(), "items": json.dumps(self.items[-MAX_ITEMS:]),
                "n": str(self.n), "user_id": self.user_id or "", "version": self.version,
                "updated_ms": str(self.updated_ms)}

    @classmethod
    def decode(cls, raw: Mapping[bytes, bytes]) -> SessionState:
        return cls(h=np.frombuffer(raw[b"h"], np.float32).copy(), items=json.loads(raw[b"items"]),
                   n=int(raw[b"n"]), user_id=raw[b"user_id"].decode() or None, version=raw[b"version"].decode(),
                   updated_ms=int(raw[b"updated_ms"]))


class Encoder(Protocol):
    @property
    def version(self) -> str: ...  # a property, so frozen dataclasses (SessionEncoder) match

    def initial(self) -> np.ndarray: ...
    def step(self, h: np.ndarray, x: np.ndarray) -> np.ndarray: ...


def advance(state: SessionState | None, events: Iterable[Mapping[str, Any]], encoder: Encoder,
            item_vector: Any) -> SessionState:
    """Apply one GRU step per event with a known item; a state from another encoder restarts."""
    if state is None or state.version != encoder.version:
        state = SessionState(h=encoder.initial(), items=state.items if state else [],
                             user_id=state.user_id if state else None, version=encoder.version)
    for event in events:
        if event.get("user_id"):
            state.user_id = str(event["user_id"])  # login: the anonymous session now belongs to the user
        item = event.get("item_id")
        vec = item_vector(item) if item else None
        if vec is not None:
            state.h = encoder.step(state.h, vec)
            state.n += 1
        if item:
            state.items.append(str(item))
        state.updated_ms = max(state.updated_ms, int(event.get("timestamp") or 0), int(time.time() * 1000))
    return state


class RedisSessions:
    def __init__(self, client: redis.Redis, keys: Keys, ttl_s: int) -> None:
        self.r = client
        self.k = keys
        self.ttl_s = ttl_s

    def get(self, session_id: str) -> SessionState | None:
        raw = self.r.hgetall(self.k.global_(SESSION, session_id))
        return SessionState.decode(raw) if raw else None  # type: ignore[arg-type]

    def pointer(self, user_id: str) -> str | None:
        raw = self.r.get(self.k.global_(USER_SESSION, user_id))
        return raw.decode() if raw else None  # type: ignore[union-attr]

    def update(self, session_id: str, events: list[Mapping[str, Any]], encoder: Encoder,
               item_vector: Any) -> SessionState:
        """Read-step-write under WATCH, so concurrent updates of one session never lose a step."""
        key = self.k.global_(SESSION, session_id)

        def apply(pipe: Any) -> SessionState:
            raw = pipe.hgetall(key)
            state = advance(SessionState.decode(raw) if raw else None, events, encoder, item_vector)
            pipe.multi()
            pipe.hset(key, mapping=state.encode())
            pipe.expire(key, self.ttl_s)
            if state.user_id:
                pipe.set(self.k.global_(USER_SESSION, state.user_id), session_id, ex=self.ttl_s)
            return state

        # redis-py types the callable as returning None; with value_from_callable it returns apply's value.
        return cast(SessionState, self.r.transaction(apply, key, value_from_callable=True))  # type: ignore[arg-type]


class MemorySessions:
    def __init__(self) -> None:
        self.states: dict[str, SessionState] = {}
        self.pointers: dict[str, str] = {}

    def get(self, session_id: str) -> SessionState | None:
        return self.states.get(session_id)

    def pointer(self, user_id: str) -> str | None:
        return self.pointers.get(user_id)

    def update(self, session_id: str, events: list[Mapping[str, Any]], encoder: Encoder,
               item_vector: Any) -> SessionState:
        state = advance(self.states.get(session_id), events, encoder, item_vector)
        self.states[session_id] = state
        if state.user_id:
            self.pointers[state.user_id] = session_id
        return state
