"""The synthetic generator has the structure the models are expected to find."""

import numpy as np

from contracts.validation import validate
from tools import synth


def test_tiny_is_contract_valid_and_deterministic() -> None:
    a = synth.generate("tiny", seed=3, end_ms=1_790_000_000_000)
    b = synth.generate("tiny", seed=3, end_ms=1_790_000_000_000)
    assert a.events.equals(b.events)
    for record in a.events.to_dict("records"):
        assert validate("event", record) == [], record
    for record in a.items.to_dict("records"):
        assert validate("item", record) == [], record
    assert a.events["timestamp"].max() < 1_790_000_000_000


def test_activity_is_power_law_and_sessions_focus_on_a_category() -> None:
    ds = synth.generate("tiny", seed=1, end_ms=1_790_000_000_000)
    per_user = ds.events["user_id"].value_counts()
    assert per_user.max() > 8 * per_user.median()  # power users exist
    cats = ds.events.merge(ds.items[["item_id", "category"]], on="item_id")
    top_share = cats.groupby("session_id")["category"].agg(lambda c: c.value_counts().iloc[0] / len(c))
    assert top_share.mean() > 0.75  # a session mostly stays in one category
    assert ds.events["user_id"].isna().mean() > 0.01  # some anonymous sessions


def test_time_of_day_depends_on_device() -> None:
    ev = synth.generate("tiny", seed=2, end_ms=1_790_000_000_000).events
    hour = (ev["timestamp"] // 3_600_000) % 24
    assert abs(hour[ev["device"] == "desktop"].mean() - hour[ev["device"] == "mobile"].mean()) > 2


def test_corrupt_records_are_all_rejected() -> None:
    ev = synth.generate("tiny", seed=4, end_ms=1_790_000_000_000).events
    bad = synth.corrupt(ev, 30, seed=4)
    reasons = [validate("event", r) for r in bad.to_dict("records")]
    assert all(reasons)
    text = " ".join(r[0] for r in reasons)
    assert "seconds" in text and "clik" in text and "control" in text
    assert np.all(bad["event_id"].str.startswith("bad-"))


def test_the_next_hour_comes_from_the_same_generator_and_never_collides() -> None:
    end = 1_790_000_000_000
    base = synth.generate("tiny", seed=3, end_ms=end)
    hour = synth.next_hour("tiny", seed=3, end_ms=end)
    assert len(hour) > 0
    assert hour["timestamp"].between(end, end + synth.HOUR_MS - 1).all()
    assert not set(hour["event_id"]) & set(base.events["event_id"])
    assert not set(hour["session_id"]) & set(base.events["session_id"])
    # same catalogue and users: every item and known user of the hour exists in the dataset
    assert set(hour["item_id"]) <= set(base.items["item_id"])
    assert set(hour["user_id"].dropna()) <= set(base.users["user_id"])
    assert all(validate("event", r) == [] for r in hour.head(50).to_dict("records"))
