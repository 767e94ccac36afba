import math

import numpy as np

from blink import features
from jobs.metrics import mrr_at, ndcg_at, recall_at


def test_metrics_on_known_lists() -> None:
    ranked = ["a", "b", "c", "d"]
    assert recall_at(ranked, {"b", "z"}, 2) == 0.5
    assert mrr_at(ranked, {"c"}, 4) == 1 / 3
    assert ndcg_at(ranked, {"a"}, 4) == 1.0
    assert math.isclose(ndcg_at(ranked, {"b"}, 4), 1 / math.log2(3))
    assert ndcg_at(ranked, {"z"}, 4) == 0.0


def test_registry_names_are_unique_and_grouped() -> None:
    assert len(features.NAMES) == len(set(features.NAMES))
    groups = {f.group for f in features.RANKING_FEATURES}
    assert groups == {"user", "item", "user_item", "context"}


def test_context_is_cyclical_and_device_missing_is_nan() -> None:
    midnight = features.context_row(features.Context(now_ms=0))
    just_before = features.context_row(features.Context(now_ms=24 * 3_600_000 - 1))
    assert np.allclose(midnight[:2], just_before[:2], atol=1e-3)  # 23:59 is next to 00:00
    assert np.isnan(midnight[4:]).all()
    mobile = features.context_row(features.Context(now_ms=0, device="mobile"))
    assert list(mobile[4:]) == [0.0, 1.0, 0.0, 0.0]
