"""Circuit breaker and per-request deadline around the model path.

pybreaker counts failures (errors and blown deadlines); after ``fail_max`` in a row it
opens and the router answers from the fallback without trying the model for
``reset_timeout`` seconds, then lets one probe through (half-open).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pybreaker

from blink.errors import DeadlineExceeded

T = TypeVar("T")


class Deadline:
    def __init__(self, budget_ms: float) -> None:
        self.start = time.perf_counter()
        self.budget_s = budget_ms / 1000

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    def check(self, stage: str) -> None:
        """Raise between stages once the budget is spent (stages are not interrupted)."""
        if time.perf_counter() - self.start > self.budget_s:
            raise DeadlineExceeded(f"deadline of {self.budget_s * 1000:.0f} ms passed after {stage}")


class ModelBreaker:
    def __init__(self, fail_max: int = 5, reset_timeout_s: float = 10.0) -> None:
        self._breaker = pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_timeout_s)

    @property
    def state(self) -> str:
        return str(self._breaker.current_state)

    def call(self, fn: Callable[[], T]) -> T:
        return self._breaker.call(fn)  # type: ignore[no-any-return]

    @staticmethod
    def is_open(exc: BaseException) -> bool:
        return isinstance(exc, pybreaker.CircuitBreakerError)
