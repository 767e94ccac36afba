"""The recommendation store: one interface, a Redis backend and an in-memory one.

Batch publishes a version's head lists and trending list under versioned keys, then
switches the current-version pointer with one SET, so readers see either the old version
or the complete new one. Serving reads a head list with one GET. Both backends run through
the same behaviour tests (tests/test_store.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, Protocol, cast

import redis

from blink.errors import UnknownVersion
from blink.keys import CURRENT_VERSION, HEAD, META, SIMILAR, TRENDING, USER_SESSION, VERSIONS, Keys

Scored = list[tuple[str, float]]
# KEYS[1] = the version's meta key, KEYS[2] = the pointer; ARGV[1] = the version. 1 = switched.
_SWITCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""


def encode(items: Scored, version: str) -> str:
    return json.dumps({"items": items, "version": version, "computed_at": int(time.time() * 1000)})


def decode(raw: str | bytes) -> Scored:
    return [(str(i), float(s)) for i, s in json.loads(raw)["items"]]


class RecStore(Protocol):
    def current_version(self) -> str | None: ...
    def head_list(self, version: str, user_id: str) -> Scored | None: ...
    def head_and_session(self, version: str, user_id: str) -> tuple[Scored | None, str | None]: ...
    def similar(self, version: str, item_id: str) -> Scored | None: ...
    def trending(self, version: str) -> Scored | None: ...
    def meta(self, version: str) -> dict[str, Any] | None: ...
    def versions(self) -> list[str]: ...
    def publish(self, version: str, heads: Iterable[tuple[str, Scored]], trending: Scored,
                meta: dict[str, Any], keep: int = 3, similar: Iterable[tuple[str, Scored]] = ()) -> int: ...
    def switch(self, version: str) -> None: ...
    def ping(self) -> bool: ...


class RedisStore:
    """Redis backend; only ever touches keys under its own prefix."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.k = keys

    def current_version(self) -> str | None:
        raw = self.r.get(self.k.global_(CURRENT_VERSION))
        return raw.decode() if isinstance(raw, bytes) else raw  # type: ignore[return-value]

    def head_list(self, version: str, user_id: str) -> Scored | None:
        raw = self.r.get(self.k.versioned(version, HEAD, user_id))
        return decode(raw) if raw is not None else None  # type: ignore[arg-type]

    def head_and_session(self, version: str, user_id: str) -> tuple[Scored | None, str | None]:
        """The head list and the user's live session id, in one round trip (MGET)."""
        head, pointer = cast(list[bytes | None], self.r.mget([self.k.versioned(version, HEAD, user_id),
                                                              self.k.global_(USER_SESSION, user_id)]))
        return (decode(head) if head is not None else None), (pointer.decode() if pointer else None)

    def similar(self, version: str, item_id: str) -> Scored | None:
        raw = self.r.get(self.k.versioned(version, SIMILAR, item_id))
        return decode(raw) if raw is not None else None  # type: ignore[arg-type]

    def trending(self, version: str) -> Scored | None:
        raw = self.r.get(self.k.versioned(version, TRENDING))
        return decode(raw) if raw is not None else None  # type: ignore[arg-type]

    def meta(self, version: str) -> dict[str, Any] | None:
        raw = self.r.get(self.k.versioned(version, META))
        return json.loads(raw) if raw is not None else None  # type: ignore[arg-type]

    def versions(self) -> list[str]:
        return [v.decode() for v in self.r.zrange(self.k.global_(VERSIONS), 0, -1)]  # type: ignore[union-attr]

    def publish(self, version: str, heads: Iterable[tuple[str, Scored]], trending: Scored,
                meta: dict[str, Any], keep: int = 3, similar: Iterable[tuple[str, Scored]] = ()) -> int:
        written = 0
        pipe = self.r.pipeline(transaction=False)
        rows = [(HEAD, u, items) for u, items in heads] + [(SIMILAR, i, items) for i, items in similar]
        for name, ident, items in rows:
            pipe.set(self.k.versioned(version, name, ident), encode(items, version))
            written += name == HEAD
            if len(pipe) >= 5000:
                pipe.execute()
        pipe.set(self.k.versioned(version, TRENDING), encode(trending, version))
        pipe.set(self.k.versioned(version, META), json.dumps(meta))
        pipe.execute()
        # The switch: everything above is complete before readers can see this version.
        tx = self.r.pipeline(transaction=True)
        tx.set(self.k.global_(CURRENT_VERSION), version)
        tx.zadd(self.k.global_(VERSIONS), {version: time.time()})
        tx.execute()
        self._expire_old(keep)
        return written

    def _expire_old(self, keep: int) -> None:
        """Delete versions beyond the newest ``keep`` (rollback targets stay)."""
        old = self.r.zrange(self.k.global_(VERSIONS), 0, -(keep + 1))
        for raw in cast(list[bytes], old):
            version = raw.decode()
            for batch in _chunks(self.r.scan_iter(match=self.k.version_pattern(version), count=1000), 1000):
                self.r.unlink(*batch)
            self.r.zrem(self.k.global_(VERSIONS), version)

    def switch(self, version: str) -> None:
        """Point readers at an already published version (rollback). The check that its keys are
        still there and the SET are one Lua script, so a concurrent publish's expiry cannot slip
        between them and leave the pointer naming a deleted version."""
        switched = self.r.eval(_SWITCH, 2, self.k.versioned(version, META), self.k.global_(CURRENT_VERSION), version)
        if not switched:
            raise UnknownVersion(f"version {version} is not in the store; known: {self.versions()}")

    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False


class MemoryStore:
    """In-process backend: tests, and a single-process deployment without Redis."""

    def __init__(self, pointers: dict[str, str] | None = None) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.current: str | None = None
        self.pointers = pointers if pointers is not None else {}  # shared with MemorySessions

    def current_version(self) -> str | None:
        return self.current

    def head_list(self, version: str, user_id: str) -> Scored | None:
        return self.data.get(version, {}).get("heads", {}).get(user_id)

    def head_and_session(self, version: str, user_id: str) -> tuple[Scored | None, str | None]:
        return self.head_list(version, user_id), self.pointers.get(user_id)

    def similar(self, version: str, item_id: str) -> Scored | None:
        return self.data.get(version, {}).get("similar", {}).get(item_id)

    def trending(self, version: str) -> Scored | None:
        return self.data.get(version, {}).get("trending")

    def meta(self, version: str) -> dict[str, Any] | None:
        return self.data.get(version, {}).get("meta")

    def versions(self) -> list[str]:
        return list(self.order)

    def publish(self, version: str, heads: Iterable[tuple[str, Scored]], trending: Scored,
                meta: dict[str, Any], keep: int = 3, similar: Iterable[tuple[str, Scored]] = ()) -> int:
        def clean(items: Scored) -> Scored:
            return [(str(i), float(s)) for i, s in items]

        rows = {u: clean(items) for u, items in heads}
        self.data[version] = {"heads": rows, "trending": clean(trending), "meta": meta,
                              "similar": {i: clean(items) for i, items in similar}}
        self.order = [v for v in self.order if v != version] + [version]
        self.current = version
        for old in self.order[:-keep]:
            self.data.pop(old, None)
        self.order = self.order[-keep:]
        return len(rows)

    def switch(self, version: str) -> None:
        if version not in self.data:
            raise UnknownVersion(f"version {version} is not in the store; known: {self.order}")
        self.current = version

    def ping(self) -> bool:
        return True


def _chunks(it: Iterable[Any], n: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
