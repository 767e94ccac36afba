"""The live session updater: each batch of accepted events advances its sessions' GRU state.

Called by the event log after an append (serving/event_log.py), so a visitor's next request
already sees their last click. The state itself lives in blink.session_store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from blink.session_store import MemorySessions, RedisSessions


class SessionUpdater:
    """Called with each batch of newly accepted events: one GRU step per event, per session."""

    def __init__(self, sessions: RedisSessions | MemorySessions, model: Callable[[], Any]) -> None:
        self.sessions = sessions
        self.model = model  # a callable returning the current Model (it may be hot-swapped)

    def __call__(self, events: list[Mapping[str, Any]]) -> None:
        model = self.model()
        if model is None or model.session is None:
            return
        by_session: dict[str, list[Mapping[str, Any]]] = {}
        for event in sorted(events, key=lambda e: int(e.get("timestamp") or 0)):
            by_session.setdefault(str(event["session_id"]), []).append(event)
        for session_id, batch in by_session.items():
            self.sessions.update(session_id, batch, model.session, model.item_vector)
