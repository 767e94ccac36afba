"""Which temporal split (``split.test_hours``, ``split.label_hours``) fits a dataset's time span.

A run ending at ``T`` cuts its events at ``T - test`` (evaluation), ``T - test - label`` (the
train cut-off) and ``T - test - 2·label`` (the embeddings' validation cut; see
jobs/interval.py and jobs/embeddings.py). Windows sized for hourly live traffic put every cut
of a 20-year-old dataset before its first event; windows sized for MovieLens leave a
three-year dataset nothing to train on. A split *fits* when most events (``MIN_TRAIN_SHARE``)
are before the validation cut and every window after it holds some (``MIN_WINDOW_SHARE``).

The importers print the environment (or the two variables) the data needs, and ``blink
run-dag`` stops before Airflow starts when the configured windows leave nothing to train on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from blink import config as config_mod

HOUR_MS = 3_600_000
MIN_TRAIN_SHARE = 0.5  # of the events, before the validation cut
MIN_WINDOW_SHARE = 0.02  # of the events, in each window after it
SHIPPED_ENVS = ("dev", "test", "retail", "movielens")  # conf/<env>.yaml; bench is dev's windows


@dataclass(frozen=True)
class Fit:
    """How a split's cuts fall on the data: the share of events before/in each part."""

    test_hours: int
    label_hours: int
    before_validation: float  # events the embeddings can be fitted on
    windows: tuple[float, float, float]  # validation, label (ranker), test (evaluation)

    @property
    def fits(self) -> bool:
        return self.before_validation >= MIN_TRAIN_SHARE and min(self.windows) >= MIN_WINDOW_SHARE

    def describe(self) -> str:
        v, lab, t = (f"{share:.0%}" for share in self.windows)
        return (f"test_hours={self.test_hours}, label_hours={self.label_hours}: {self.before_validation:.0%} "
                f"of the events before the validation cut, {v} / {lab} / {t} in the validation, label "
                f"and test windows")


def fit(timestamps_ms: np.ndarray, as_of_ms: int, test_hours: int, label_hours: int) -> Fit:
    """Where the cuts of a run ending at ``as_of_ms`` fall on these event times."""
    ts = np.sort(np.asarray(timestamps_ms, dtype=np.int64))
    n = max(len(ts), 1)
    test, label = test_hours * HOUR_MS, label_hours * HOUR_MS
    cuts = [as_of_ms - test - 2 * label, as_of_ms - test - label, as_of_ms - test, as_of_ms]
    counts = np.searchsorted(ts, cuts, side="left")
    windows = tuple(float(b - a) / n for a, b in zip(counts[:-1], counts[1:], strict=True))
    return Fit(test_hours, label_hours, float(counts[0]) / n, windows)  # type: ignore[arg-type]


def suggest(timestamps_ms: np.ndarray, as_of_ms: int) -> tuple[int, int]:
    """Windows that fit: the test window holds the newest tenth of the events, the label
    window (and so the validation window) the tenth before it; in whole hours."""
    ts = np.asarray(timestamps_ms, dtype=np.int64)
    q80, q90 = np.quantile(ts, [0.8, 0.9])
    test = max(1, math.ceil((as_of_ms - q90) / HOUR_MS))
    label = max(1, math.ceil((q90 - q80) / HOUR_MS))
    return test, label


def env_windows(env: str) -> tuple[int, int]:
    """``(test_hours, label_hours)`` of a shipped environment, without this shell's overrides."""
    cfg = config_mod.load(env=env, environ={})
    return cfg.split.test_hours, cfg.split.label_hours


@dataclass(frozen=True)
class Advice:
    """What to run a dataset with: a shipped ``env`` whose windows fit, or two variables."""

    env: str | None
    variables: dict[str, str]
    reason: str

    @property
    def prefix(self) -> str:
        """The shell prefix of the commands to run, e.g. ``BLINK_ENV=movielens``."""
        if self.env is not None:
            return f"BLINK_ENV={self.env}"
        return " ".join(f"{k}={v}" for k, v in self.variables.items())

    def __str__(self) -> str:
        return f"run it with {self.prefix}: {self.reason}"


def advise(timestamps_ms: np.ndarray, as_of_ms: int, prefer: str | None = None) -> Advice | None:
    """Which BLINK_ENV (``prefer`` first, then the shipped ones), or which two variables, the
    data needs; None without events."""
    if len(timestamps_ms) == 0:
        return None
    span = f"events span {_date(int(np.min(timestamps_ms)))} to {_date(int(np.max(timestamps_ms)))}"
    envs = [e for e in (prefer, *SHIPPED_ENVS) if e is not None]
    for env in dict.fromkeys(envs):
        result = fit(timestamps_ms, as_of_ms, *env_windows(env))
        if result.fits:
            return Advice(env, {}, f"{span}; its split windows fit ({result.describe()})")
    test, label = suggest(timestamps_ms, as_of_ms)
    result = fit(timestamps_ms, as_of_ms, test, label)
    return Advice(None, {"BLINK_SPLIT__TEST_HOURS": str(test), "BLINK_SPLIT__LABEL_HOURS": str(label)},
                  f"{span}; no shipped BLINK_ENV's split windows fit this data ({result.describe()})")


def check(timestamps_ms: np.ndarray, as_of_ms: int, test_hours: int, label_hours: int) -> str | None:
    """Why the configured windows cannot work on this data (no event before the validation
    cut, which the embeddings need, or none in the test window), naming the windows to shrink
    and to what; None when they can."""
    if len(timestamps_ms) == 0:
        return None
    ts = np.asarray(timestamps_ms, dtype=np.int64)
    validation_cut = as_of_ms - (test_hours + 2 * label_hours) * HOUR_MS
    if (ts < validation_cut).any() and (ts >= as_of_ms - test_hours * HOUR_MS).any():
        return None
    test, label = suggest(ts, as_of_ms)
    return (f"the split windows do not fit the data: events span {_date(int(ts.min()))} to "
            f"{_date(int(ts.max()))}, and split.test_hours={test_hours} + 2 x split.label_hours={label_hours} "
            f"put the embeddings' validation cut at {_date(validation_cut)}, with "
            f"{int((ts < validation_cut).sum())} events before it. Shrink the windows to "
            f"BLINK_SPLIT__TEST_HOURS={test} BLINK_SPLIT__LABEL_HOURS={label} (the newest tenth of the "
            f"events to test, the tenth before it to label), or pick a BLINK_ENV whose windows fit")


def _date(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
