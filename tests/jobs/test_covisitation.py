"""Co-visitation and users' recent items (jobs/aggregates.py), on data whose answer is known.

Hand-made tables check the rules one by one (forward and reverse weights, the gap, anonymous
sessions, repeated items, ties); a random table is compared with a plain-Python reference that
sums exact fractions, so neighbours must match in order and scores to the last bits.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from fractions import Fraction
from typing import Any

import pytest

from blink.config import Config, SparkConfig

pytestmark = pytest.mark.integration
MIN = 60_000
HOUR = 60 * MIN
AS_OF = 10 * 24 * HOUR
COLUMNS = ("event_id", "user_id", "session_id", "item_id", "event_type", "timestamp", "device", "value", "price")
EVENT_SCHEMA = ("event_id string, user_id string, session_id string, item_id string, event_type string, "
                "timestamp long, device string, value double, price double")
ITEM_SCHEMA = "item_id string, category string, price double, created_at long, title string"
Event = tuple[str | None, str, str | None, int]  # user_id, session_id, item_id, timestamp


@pytest.fixture(scope="module")
def spark() -> Any:
    """The one local session, configured exactly as tests/jobs/test_features_parity.py does
    (get_spark is getOrCreate: whichever module runs first starts it, the other reuses it)."""
    from jobs import spark as blink_spark

    return blink_spark.get_spark(Config(spark=SparkConfig(master="local[2]", shuffle_partitions=2,
                                                        driver_memory="1g")))


def _frame(spark: Any, events: list[Event]) -> Any:
    rows = [(f"e{j:04d}", user, session, item, "view" if item else "search", ts, "web", None, None)
            for j, (user, session, item, ts) in enumerate(events)]
    return spark.createDataFrame(rows, EVENT_SCHEMA)


def _covisit(spark: Any, events: list[Event], **params: int) -> dict[str, tuple[list[str], list[float]]]:
    from jobs.aggregates import covisitation

    out = covisitation(_frame(spark, events), AS_OF, **params).collect()
    return {r["item_id"]: (list(r["neighbours"]), list(r["scores"])) for r in out}


def test_hand_made_sequences_give_the_hand_computed_lists(spark: Any) -> None:
    events: list[Event] = [
        # u1: A, B, C a minute apart; the search between B and C has no item and takes no lag.
        ("u1", "s1", "A", 0), ("u1", "s1", "B", MIN), ("u1", "s1", None, MIN + 1), ("u1", "s1", "C", 2 * MIN),
        # u2: A, B (in two sessions: a user's sequence spans sessions); the A at the cut-off is too late.
        ("u2", "s2", "A", 0), ("u2", "s3", "B", MIN), ("u2", "s3", "A", AS_OF),
        # u3: D and E two hours apart (more than max_gap) count for nothing; then D, E a minute apart.
        ("u3", "s4", "A", 0), ("u3", "s4", "D", 2 * HOUR), ("u3", "s4", "E", 2 * HOUR + MIN),
        # Anonymous sessions are sequences of their own: B, A in s9; s10 (just E) must not join it.
        (None, "s9", "B", 0), (None, "s9", "A", MIN), (None, "s10", "E", 2 * MIN),
        # u4: C, C, A: the repeated C is no pair, but it still takes a lag.
        ("u4", "s5", "C", 0), ("u4", "s5", "C", MIN), ("u4", "s5", "A", 2 * MIN),
    ]
    got = _covisit(spark, events, window=3, max_gap_ms=HOUR, top_n=10)
    # A->B: u1 1 + u2 1 + s9 0.5 = 2.5;  A->C: u1 1/2 + u4 (0.5/2 + 0.5/1) = 1.25
    # B->A: u1 0.5 + u2 0.5 + s9 1 = 2;  B->C: u1 1
    # C->A: u1 0.5/2 + u4 (1/2 + 1) = 1.75;  C->B: u1 0.5;  D->E 1, E->D 0.5
    assert got == {
        "A": (["B", "C"], [1.0, 0.5]),
        "B": (["A", "C"], [1.0, 0.5]),
        "C": (["A", "B"], [1.0, 0.5 / 1.75]),
        "D": (["E"], [1.0]),
        "E": (["D"], [1.0]),
    }


def test_window_bounds_the_lag_and_top_n_breaks_ties_by_id(spark: Any) -> None:
    events: list[Event] = [("u1", "s1", "X", 0), ("u1", "s1", "Z", MIN),
                           ("u2", "s2", "X", 0), ("u2", "s2", "Y", MIN), ("u2", "s2", "W", 2 * MIN)]
    got = _covisit(spark, events, window=1, max_gap_ms=HOUR, top_n=10)
    assert got["X"] == (["Y", "Z"], [1.0, 1.0])  # X->W is lag 2: outside the window
    assert got["W"] == (["Y"], [1.0])
    assert _covisit(spark, events, window=1, max_gap_ms=HOUR, top_n=1)["X"] == (["Y"], [1.0])
    assert "W" in _covisit(spark, events, window=2, max_gap_ms=HOUR, top_n=10)["X"][0]


def test_nothing_before_the_cut_off_is_an_empty_table(spark: Any, tmp_path: Any) -> None:
    import pandas as pd

    from blink import layout
    from jobs.aggregates import covisitation, write_covisitation

    late = _frame(spark, [("u1", "s1", "A", AS_OF), ("u1", "s1", "B", AS_OF + MIN)])
    assert write_covisitation(covisitation(late, AS_OF, window=3, max_gap_ms=HOUR, top_n=5), tmp_path) == 0
    assert list(pd.read_parquet(tmp_path / layout.COVISITATION).columns) == ["item_id", "neighbours", "scores"]


# ---- an independent reference on random data --------------------------------------------------

def reference_covisitation(events: list[tuple[str, Event]], as_of: int, window: int, max_gap_ms: int,
                           top_n: int) -> dict[str, tuple[list[str], list[float]]]:
    """The definition, written the obvious way: exact fractions, sequences sorted in Python."""
    sequences: dict[tuple[str, str], list[tuple[int, str, str]]] = defaultdict(list)
    for event_id, (user, session, item, ts) in events:
        if ts < as_of and item is not None:
            key = ("user", user) if user is not None else ("session", session)
            sequences[key].append((ts, event_id, item))
    weights: dict[str, dict[str, Fraction]] = defaultdict(lambda: defaultdict(Fraction))
    for seq in sequences.values():
        seq.sort()
        for i, (ts_a, _, a) in enumerate(seq):
            for lag in range(1, window + 1):
                if i + lag >= len(seq):
                    break
                ts_b, _, b = seq[i + lag]
                if b != a and ts_b - ts_a <= max_gap_ms:
                    weights[a][b] += Fraction(1, lag)
                    weights[b][a] += Fraction(1, 2 * lag)
    out = {}
    for a, row in weights.items():
        best = sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
        out[a] = ([b for b, _ in best], [float(w / best[0][1]) for _, w in best])
    return out


def _random_events(seed: int) -> list[Event]:
    """300 events, 30 items, 20 users plus anonymous sessions; equal timestamps and searches too."""
    rng = random.Random(seed)
    events: list[Event] = []
    for _ in range(300):
        user = rng.choice([None, None, *[f"u{j}" for j in range(20)]])
        session = f"s{rng.randrange(40)}"
        item = None if rng.random() < 0.05 else f"i{rng.randrange(30):02d}"
        # Minutes on a coarse grid: ties in time are common and the gap cuts some pairs.
        ts = AS_OF - 6 * HOUR + rng.randrange(80) * 5 * MIN
        events.append((user, session, item, ts))
    return events


@pytest.mark.parametrize(("window", "max_gap_ms", "top_n"), [(5, HOUR, 50), (2, 20 * MIN, 3), (25, 6 * HOUR, 7)])
def test_spark_matches_the_reference_on_random_events(spark: Any, window: int, max_gap_ms: int, top_n: int) -> None:
    events = _random_events(seed=window)
    want = reference_covisitation([(f"e{j:04d}", e) for j, e in enumerate(events)], AS_OF, window, max_gap_ms, top_n)
    got = _covisit(spark, events, window=window, max_gap_ms=max_gap_ms, top_n=top_n)
    # The test has teeth: many items, lists cut at top_n, and tied weights that only the id orders.
    assert len(want) > 20 and max(len(n) for n, _ in want.values()) >= min(top_n, 10)
    assert any(len(set(s)) < len(s) for _, s in want.values())
    assert set(got) == set(want)
    for item, (neighbours, scores) in want.items():
        assert got[item][0] == neighbours, item
        # window 25 sums as decimal(38,0), whose cast to double rounds: close, not bit-identical.
        assert all(math.isclose(g, w, rel_tol=1e-12) for g, w in zip(got[item][1], scores, strict=True)), item
        assert scores[0] == 1.0 and all(0 < s <= 1 for s in got[item][1])


# ---- users' recent items -----------------------------------------------------------------------

def test_recent_is_the_last_distinct_items_newest_first(spark: Any) -> None:
    from jobs.aggregates import RECENT_SIZE, categories_of, transform

    events: list[Event] = [
        ("u1", "s1", "A", 1 * MIN), ("u1", "s1", "B", 2 * MIN), ("u1", "s2", "A", 3 * MIN),
        ("u1", "s2", "C", 3 * MIN),  # the same time as the second A: ties go by item id
        ("u1", "s2", None, 4 * MIN),  # a search: no item
        ("u1", "s2", "D", AS_OF),  # at the cut-off: not yet
        ("u2", "s3", None, MIN),  # only searched
        (None, "s4", "E", MIN),  # anonymous: no user row
        *[("u3", "s5", f"i{j:02d}", j * MIN) for j in range(RECENT_SIZE + 5)],
    ]
    items = spark.createDataFrame([(i, "cat", 1.0, 0, i) for i in ["A", "B", "C", "D", "E"]], ITEM_SCHEMA)
    users, _, _ = transform(_frame(spark, events), items, AS_OF, categories_of(items))
    got = {r["user_id"]: (list(r["recent"]), sorted(r["history"])) for r in users.collect()}
    assert got["u1"] == (["A", "C", "B"], ["A", "B", "C"])
    assert got["u2"] == ([], [])
    assert got["u3"][0] == [f"i{j:02d}" for j in range(RECENT_SIZE + 4, 4, -1)]
    assert set(got) == {"u1", "u2", "u3"}
