"""`blink run-dag --dag auto`: which DAG a run gets, from the latest published fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blink import config, layout
from tools.cli import _which_dag

FIT_MS = 1_790_000_000_000  # 2026-09-21T14:13:20Z


@pytest.fixture()
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> config.Config:
    monkeypatch.setenv("BLINK_PATHS__VAR_DIR", str(tmp_path / "var"))
    return config.load()


def publish_fit(cfg: config.Config, manifest: bool = True) -> None:
    d = cfg.layout.version("fit-1")
    d.mkdir(parents=True)
    if manifest:
        (d / layout.MANIFEST).write_text(json.dumps({"as_of_ms": FIT_MS}))
    cfg.layout.latest_fit.write_text("fit-1")


def test_the_first_run_is_daily(cfg: config.Config) -> None:
    assert _which_dag(cfg, "2026-09-21T14:00:00+00:00") == "recs_daily"


def test_hourly_within_a_day_after_the_fit_daily_after_it(cfg: config.Config) -> None:
    publish_fit(cfg)
    assert _which_dag(cfg, "2026-09-21T15:00:00+00:00") == "recs_hourly"
    assert _which_dag(cfg, "2026-09-22T14:00:00Z") == "recs_hourly"
    assert _which_dag(cfg, "2026-09-22T15:00:00+00:00") == "recs_daily"  # over 24 h: refit
    assert _which_dag(cfg, "2026-09-21T14:00:00+00:00") == "recs_daily"  # before the fit


def test_an_incomplete_fit_means_daily(cfg: config.Config) -> None:
    publish_fit(cfg, manifest=False)
    assert _which_dag(cfg, "2026-09-21T15:00:00+00:00") == "recs_daily"
