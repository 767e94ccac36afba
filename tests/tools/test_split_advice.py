"""Split windows that fit the data: the importers say which BLINK_ENV (or which two variables)
a dataset needs, and `blink run-dag` stops early, naming the windows to shrink and to what."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tools import split_advice
from tools.cli import cli

HOUR = split_advice.HOUR_MS
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MOVIELENS = DATA / "ml-latest-small"
RETAIL = DATA / "online-retail" / "online_retail.parquet"
START = 956_703_932_000  # 2000-04-25, as MovieLens-1M


def ml1m_like(n: int = 20_000) -> np.ndarray:
    """Three years of ratings, nine in ten of them in the first eight months (as ML-1M)."""
    rng = np.random.default_rng(0)
    early = START + rng.uniform(0, 240 * 24 * HOUR, int(n * 0.9))
    late = START + rng.uniform(240 * 24 * HOUR, 3 * 8760 * HOUR, n - len(early))
    return np.sort(np.concatenate([early, late]).astype(np.int64))


def run_date(times: np.ndarray) -> int:
    return -(-int(times.max()) // HOUR) * HOUR


def test_movielens_windows_do_not_fit_ml1m_like_data_and_the_advice_does() -> None:
    times = ml1m_like()
    as_of = run_date(times)
    assert not split_advice.fit(times, as_of, *split_advice.env_windows("movielens")).fits
    advice = split_advice.advise(times, as_of, prefer="movielens")
    assert advice is not None and advice.env is None
    test, label = int(advice.variables["BLINK_SPLIT__TEST_HOURS"]), int(advice.variables["BLINK_SPLIT__LABEL_HOURS"])
    assert split_advice.fit(times, as_of, test, label).fits
    assert advice.prefix == f"BLINK_SPLIT__TEST_HOURS={test} BLINK_SPLIT__LABEL_HOURS={label}"
    assert "no shipped BLINK_ENV's split windows fit" in str(advice)


def test_check_names_the_windows_to_shrink_and_to_what() -> None:
    times = ml1m_like()
    as_of = run_date(times)
    problem = split_advice.check(times, as_of, 8760, 8760)  # BLINK_ENV=movielens
    assert problem is not None
    test, label = split_advice.suggest(times, as_of)
    assert "split.test_hours=8760 + 2 x split.label_hours=8760 put the embeddings' validation cut at 2000-" in problem
    assert "with 0 events before it" in problem
    assert f"Shrink the windows to BLINK_SPLIT__TEST_HOURS={test} BLINK_SPLIT__LABEL_HOURS={label}" in problem
    assert split_advice.check(times, as_of, test, label) is None


def test_live_traffic_fits_the_default_windows() -> None:
    now = 1_790_000_000_000
    times = np.arange(now - 30 * 24 * HOUR, now, 60_000, dtype=np.int64)  # a month, one event a minute
    advice = split_advice.advise(times, run_date(times))
    assert advice is not None and advice.env == "dev" and advice.prefix == "BLINK_ENV=dev"


def test_run_dag_stops_before_airflow_when_nothing_is_before_the_validation_cut(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLINK_PATHS__VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BLINK_ENV", "movielens")
    folder = tmp_path / "var" / "landing" / "events"
    folder.mkdir(parents=True)
    times = ml1m_like(3000)
    pd.DataFrame({"event_id": [f"e{n}" for n in range(len(times))], "timestamp": times}).to_parquet(
        folder / "ml1m.parquet")
    result = CliRunner().invoke(cli, ["run-dag"])
    assert result.exit_code == 1
    assert "the split windows do not fit the data" in result.output
    assert "BLINK_SPLIT__TEST_HOURS=" in result.output and "(BLINK_ENV=movielens)" in result.output
    assert not (tmp_path / "var" / "redis").exists()  # nothing was started


needs_data = pytest.mark.skipif(not MOVIELENS.exists() or not RETAIL.exists(),
                                reason=f"shared datasets not found under {DATA}")


@needs_data
@pytest.mark.parametrize(("command", "path", "env"), [("movielens", MOVIELENS, "movielens"),
                                                      ("online-retail", RETAIL, "retail")])
def test_import_says_which_blink_env_the_data_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    command: str, path: Path, env: str) -> None:
    monkeypatch.setenv("BLINK_PATHS__VAR_DIR", str(tmp_path / "var"))
    result = CliRunner(env={"COLUMNS": "300"}).invoke(cli, ["import", command, str(path)])
    assert result.exit_code == 0, result.output
    assert f"run it with BLINK_ENV={env}: events span" in result.output
    assert f"next: `BLINK_ENV={env} blink run-dag`" in result.output
