"""Precompute: batched lists equal one-request lists, and an hourly run keeps only what it may.

Real parts throughout: the router tests' small model written as version directories
(tests/serving/model_files.py), a local Spark, the Great Expectations gate.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blink import config, layout
from blink.candidates import SourceSizes
from blink.config import Config
from blink.feature_matrix import HOUR_MS, Context
from blink.model import Model
from blink.pipeline import Pipeline
from jobs import precompute
from jobs.interval import Interval
from tests.serving.model_files import write_version
from tests.serving.test_router import small_model

AS_OF = small_model().as_of_ms


def test_recommend_many_answers_what_recommend_answers_one_by_one() -> None:
    pipe = Pipeline(small_model(), 30)
    ctx = Context(now_ms=AS_OF)
    users = ["u0", "stranger", "u1", "u2", "u0"]
    assert pipe.recommend_many(users, 10, ctx) == [pipe.recommend(u, 10, ctx) for u in users]


def _version(cfg: Config, run_id: str, as_of_ms: int, fit: str | None = None) -> Interval:
    """A version directory for ``run_id`` at ``as_of_ms`` (no manifest: it is being built),
    refreshing ``fit`` when given, with u0 and u1 as head users."""
    run = Interval(cfg, run_id, as_of_ms)
    write_version(cfg.layout.artifacts, run.version, as_of_ms)
    (run.artifact_dir / layout.MANIFEST).unlink()
    (run.artifact_dir / layout.HEAD_USERS).write_text(json.dumps(["u0", "u1"]))
    if fit is not None:
        (run.artifact_dir / layout.FITTED_FROM).write_text(json.dumps({"version": fit}))
    return run


def _publish(run: Interval) -> None:
    """What publish leaves on disk for the next run: the manifest."""
    manifest = {"version": run.version, "as_of_ms": run.as_of_ms, "published_at_ms": run.as_of_ms}
    (run.artifact_dir / layout.MANIFEST).write_text(json.dumps(manifest))


def _lists(run: Interval) -> pd.DataFrame:
    return pd.read_parquet(run.artifact_dir / layout.HEAD_LISTS).set_index("user_id")


@pytest.mark.integration
def test_hourly_keeps_unchanged_users_lists_and_recomputes_changed_ones(
        var_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLINK_ENV", "test")
    monkeypatch.setenv("BLINK_HEAD__LIST_LENGTH", "20")
    monkeypatch.setenv("BLINK_SPARK__MASTER", "local[2]")
    cfg = config.load()
    daily = _version(cfg, "daily", AS_OF - HOUR_MS)
    assert precompute.run(cfg, daily)["computed"] == 2  # a new fit: every list computed
    _publish(daily)

    # An hour later u0 consumed another item; u1 did nothing. Trending changed for everyone,
    # so a recomputed u1 list would differ from the one the daily version computed.
    hourly = _version(cfg, "hourly", AS_OF, fit=daily.version)
    fdir = layout.features_dir(hourly.artifact_dir, "serve")
    users = pd.read_parquet(fdir / "users.parquet")
    users.at[0, "history"] = [*users.at[0, "history"], "i3"]
    users.to_parquet(fdir / "users.parquet")
    meta = json.loads((fdir / "meta.json").read_text())
    meta["trending"] = meta["trending"][::-1]
    (fdir / "meta.json").write_text(json.dumps(meta))

    summary = precompute.run(cfg, hourly)
    assert (summary["computed"], summary["kept"]) == (1, 1)
    before, after = _lists(daily), _lists(hourly)
    assert after.loc["u1", "items"] == before.loc["u1", "items"]  # kept, byte for byte
    assert after.loc["u1", "computed_ms"] == daily.as_of_ms
    assert after.loc["u0", "computed_ms"] == hourly.as_of_ms  # recomputed at this version
    model = Model.load(hourly.artifact_dir, "serve")
    live = Pipeline(model, sizes=SourceSizes.from_config(cfg)).recommend("u0", 20, Context(now_ms=hourly.as_of_ms))
    assert [tuple(p) for p in json.loads(after.loc["u0", "items"])] == \
           [(i, pytest.approx(s, abs=1e-6)) for i, s in live or []]
    assert "i3" not in {i for i, _ in json.loads(after.loc["u0", "items"])}

    # Past the age bound nothing is kept: both lists are computed again.
    monkeypatch.setenv("BLINK_PRECOMPUTE__MAX_AGE_HOURS", "0.5")
    assert precompute.run(config.load(), hourly)["kept"] == 0
    assert set(_lists(hourly)["computed_ms"]) == {hourly.as_of_ms}


def test_unchanged_users_compares_history_recent_items_and_vector() -> None:
    before, after = small_model(), small_model()
    assert precompute.unchanged_users(before, after, ["u0", "u1", "u2", "stranger"]) == {"u0", "u1", "u2"}
    after.history[0] = np.append(after.history[0], 7)
    after.user_vectors[1] = after.user_vectors[1] + 1e-3
    assert precompute.unchanged_users(before, after, ["u0", "u1", "u2"]) == {"u2"}
