"""Every Redis key Blink uses, built by one helper from named constants.

Versioned keys live under ``<prefix>:v:<version>:...`` so that a new model version is
written completely before one SET of CURRENT_VERSION switches readers to it, and old
versions can be expired as a whole.
"""

from __future__ import annotations

CURRENT_VERSION = "current_version"  # string: the version serving reads
VERSIONS = "versions"  # sorted set: published versions, score = publish time
HEAD = "head"  # per user: precomputed list (JSON)
TRENDING = "trending"  # per version: fallback list (JSON)
META = "meta"  # per version: manifest summary (JSON)
EVENTS = "events"  # stream: accepted live events, drained into the lake by ingest
SIMILAR = "similar"  # per version and item: precomputed similar items (JSON)
SESSION = "session"  # per session id: GRU state hash (TTL = session idle time)
USER_SESSION = "user_session"  # per user id: their live session id (TTL = session idle time)
SEEN = "seen"  # per event id: marker that makes appends exactly-once (with a TTL)


class Keys:
    """Builds keys under one prefix; the prefix comes from config (redis.key_prefix)."""

    def __init__(self, prefix: str = "blink") -> None:
        self.prefix = prefix

    def global_(self, name: str, ident: str | None = None) -> str:
        key = f"{self.prefix}:{name}"
        return key if ident is None else f"{key}:{ident}"

    def versioned(self, version: str, name: str, ident: str | None = None) -> str:
        key = f"{self.prefix}:v:{version}:{name}"
        return key if ident is None else f"{key}:{ident}"

    def version_pattern(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:*"
