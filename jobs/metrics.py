"""Offline ranking metrics (pure functions, shared by evaluation and tests)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def recall_at(ranked: Sequence[str], truth: set[str], k: int) -> float:
    return len(set(ranked[:k]) & truth) / len(truth) if truth else 0.0


def ndcg_at(ranked: Sequence[str], truth: set[str], k: int) -> float:
    gains = [1.0 / np.log2(j + 2) for j, item in enumerate(ranked[:k]) if item in truth]
    ideal = sum(1.0 / np.log2(j + 2) for j in range(min(k, len(truth))))
    return float(sum(gains) / ideal) if ideal else 0.0


def mrr_at(ranked: Sequence[str], truth: set[str], k: int) -> float:
    for j, item in enumerate(ranked[:k]):
        if item in truth:
            return 1.0 / (j + 1)
    return 0.0


def hit_at(ranked: Sequence[str], truth: set[str], k: int) -> float:
    """1 if any relevant item is in the top k."""
    return float(bool(set(ranked[:k]) & truth))
