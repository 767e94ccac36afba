"""Which model versions exist, and pointing serving back at an older one (rollback).

A version can be served again when it is *complete* on local disk (its manifest, written last
by publish, is there and every file matches the manifest's checksums) and its keys are still
in the store (publish keeps the newest three versions' head lists for exactly this). The switch
is the store's one atomic pointer change; every worker's registry picks it up on its next poll
(``serving.reload_seconds``). Used by ``blink versions`` / ``blink rollback`` and by
``POST /admin/rollback``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from blink import layout
from blink.errors import BlinkError, NotReady, UnknownVersion
from blink.store import RecStore
from serving.registry import verify


class IncompleteVersion(BlinkError):
    """A version directory exists but cannot be served (no manifest, or files not matching it)."""

    status = 409


@dataclass
class VersionInfo:
    version: str
    complete: bool  # manifest on disk (publish writes it last)
    in_store: bool  # its lists are in the store: a rollback target
    served: bool  # the store's pointer names it
    as_of_ms: int | None = None
    published_at_ms: int | None = None
    fitted_from: str | None = None
    eval: dict[str, Any] | None = None  # the evaluation that passed its gate (all users)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_versions(store: RecStore, artifacts: Path) -> list[VersionInfo]:
    """Every version on disk or in the store, newest published first."""
    current = store.current_version()
    in_store = set(store.versions())
    names = {p.name for p in artifacts.iterdir() if p.is_dir()} if artifacts.is_dir() else set()
    out = []
    for name in names | in_store:
        manifest = _manifest(artifacts / name)
        out.append(VersionInfo(name, manifest is not None, name in in_store, name == current,
                               _int(manifest, "as_of_ms"), _int(manifest, "published_at_ms"),
                               (manifest or {}).get("fitted_from"), (manifest or {}).get("eval")))
    return sorted(out, key=lambda v: (v.published_at_ms or 0, v.version), reverse=True)


def rollback(store: RecStore, artifacts: Path, version: str) -> str | None:
    """Point the store at ``version``; the version served before. Refuses (nothing changed) an
    unknown version, one not complete on disk or failing its checksums, or one expired from the store;
    ``NotReady`` (503) when the store fails to answer."""
    try:
        return _rollback(store, artifacts, version)
    except redis.RedisError as exc:
        raise NotReady(f"the store did not answer ({exc}); `blink versions` shows which version it names "
                       "now; retry the rollback") from None


def _rollback(store: RecStore, artifacts: Path, version: str) -> str | None:
    known = {v.version: v for v in list_versions(store, artifacts)}
    info = known.get(version)
    if info is None:
        raise UnknownVersion(f"there is no version {version!r}; `blink versions` lists them: "
                             f"{', '.join(sorted(known)) or 'none'}")
    if not info.complete:
        raise IncompleteVersion(f"version {version} has no manifest in {artifacts / version}: its publish never "
                                "finished, so it is not complete; choose another (`blink versions`)")
    try:
        verify(artifacts / version)
    except BlinkError as exc:
        raise IncompleteVersion(f"version {version} cannot be served: {exc}") from None
    if not info.in_store:
        raise UnknownVersion(f"version {version} is on disk but no longer in the store (publish keeps the newest "
                             "versions only); roll back to one `blink versions` shows as in the store")
    previous = store.current_version()
    store.switch(version)
    return previous


def _manifest(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / layout.MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _int(manifest: dict[str, Any] | None, key: str) -> int | None:
    value = (manifest or {}).get(key)
    return int(value) if isinstance(value, int | float) else None


class Forbidden(BlinkError):
    """The action is disabled on this server (e.g. the admin API without a configured token)."""

    status = 403
