"""Publish: versioned Redis keys, the manifest, then one atomic switch of the pointer.

Nothing before this task touches what serving reads, so a failure anywhere upstream leaves
the previous version serving. The manifest is written last on disk too: a version
directory without one is incomplete and never loaded.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from blink import layout, redis_client
from blink.config import Config
from blink.errors import GateFailed
from blink.files import sha256
from blink.keys import Keys
from blink.store import RedisStore
from jobs.interval import Interval

log = logging.getLogger(__name__)


def store(cfg: Config) -> RedisStore:
    return RedisStore(redis_client.client(cfg, timeout_s=30.0), Keys(cfg.redis.key_prefix))


def run(cfg: Config, interval: Interval) -> dict[str, Any]:
    d = interval.artifact_dir
    timings = d / layout.TIMINGS  # the manifest records every task's duration
    summary = json.loads(timings.read_text()) if timings.exists() else {}
    report = json.loads((d / layout.EVAL).read_text())
    if not report["gate"]["passed"]:
        raise GateFailed(report["gate"]["reason"])
    lists = pd.read_parquet(d / layout.HEAD_LISTS)
    heads = ((u, json.loads(items)) for u, items in zip(lists["user_id"], lists["items"], strict=True))
    sims = pd.read_parquet(d / layout.SIMILAR_LISTS)
    similar = ((i, json.loads(items)) for i, items in zip(sims["item_id"], sims["items"], strict=True))
    trending = json.loads((layout.features_dir(d, "serve") / "meta.json").read_text())["trending"]
    fitted = d / layout.FITTED_FROM  # an hourly version names its fit; a daily one is its own
    fit = json.loads(fitted.read_text())["version"] if fitted.exists() else interval.version
    manifest = {"version": interval.version, "as_of_ms": interval.as_of_ms, "run_id": interval.run_id,
                "fitted_from": fit, "checksums": checksums(d),
                "published_at_ms": int(time.time() * 1000), "head_users": len(lists), "head_items": len(sims),
                "eval": report["table"].get("all"), "tasks": summary}
    (d / layout.MANIFEST).write_text(json.dumps(manifest, indent=1))
    written = store(cfg).publish(interval.version, heads, [tuple(t) for t in trending], manifest,
                                 similar=similar)
    if fit == interval.version:  # hourly runs refresh the newest fit that reached serving
        cfg.layout.latest_fit.write_text(fit)
    log.info("published %s: %d head lists", interval.version, written)
    return {"version": interval.version, "head_lists": written}


# What serving loads (blink.model.Model.load at "serve"): only these are checksummed. Reports
# (eval.json, tunings) may be rewritten after publish (a re-evaluation), and ScaNN's asset-path
# file is rewritten when a version is moved or linked.
SERVED_FILES = (layout.EMBEDDINGS, layout.user_vectors(Path(), "serve").name, layout.RANKER, layout.FUSION,
                layout.SESSION_WEIGHTS)
SERVED_DIRS = (f"{layout.FEATURES_DIR}/serve/", f"{layout.INDEX_DIR}/")
UNCHECKED = {f"{layout.INDEX_DIR}/scann_assets.pbtxt"}


def checksums(directory: Path) -> dict[str, str]:
    """sha256 of every file of the version that serving loads, by path relative to it: serving
    refuses a version whose files no longer match (a truncated or corrupted artifact) and falls
    back to another."""
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if (name in SERVED_FILES or name.startswith(SERVED_DIRS)) and name not in UNCHECKED:
            out[name] = sha256(path)
    return out


def published_dir(cfg: Config) -> Any:
    """The artifact directory of the version serving now (None before the first publish)."""
    version = store(cfg).current_version()
    return cfg.layout.version(version) if version else None
