"""Deadlines and circuit breakers around what a request depends on (the model path, Redis).

``Deadline`` is one request's time budget. ``HardDeadline`` runs the model path on a small
pool of threads and waits for it at most the remaining budget: when the wait times out the
request answers from the fallback at once, and the late work stops at its next stage check
(``Deadline.check``) instead of being waited for. A stage cannot be interrupted in Python, so
a stage that never returns keeps its thread; the pool is bounded and, when every thread is
busy with late work, the model path is refused at once (the fallback answers) rather than
queued.

``Breaker`` counts failures (errors and blown deadlines) of one dependency; after
``fail_max`` in a row it opens and callers skip the dependency for ``reset_timeout_s``
seconds, then one probe goes through (half-open). Every state change is logged and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import pybreaker
import redis

from blink.errors import DeadlineExceeded
from serving import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")


class Deadline:
    def __init__(self, budget_ms: float) -> None:
        self.start = time.perf_counter()
        self.budget_s = budget_ms / 1000

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    def remaining_s(self) -> float:
        return max(0.0, self.budget_s - (time.perf_counter() - self.start))

    def check(self, stage: str) -> None:
        """Raise between stages once the budget is spent (late work stops here)."""
        if time.perf_counter() - self.start > self.budget_s:
            raise DeadlineExceeded(f"deadline of {self.budget_s * 1000:.0f} ms passed after {stage}")


class HardDeadline:
    """Runs a callable on a bounded thread pool and waits for it until the deadline, no longer."""

    def __init__(self, threads: int = 4) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="model-path")
        self._slots = threading.BoundedSemaphore(threads)  # work in flight, late work included
        self.abandoned = 0  # calls answered without waiting for them (deadline passed or pool busy)

    def run(self, fn: Callable[[], T], deadline: Deadline) -> T:
        """``fn()``'s result if it returns within ``deadline``; else ``DeadlineExceeded``."""
        if not self._slots.acquire(blocking=False):
            self.abandoned += 1
            raise DeadlineExceeded(f"all {self.threads} model threads are busy with late work")
        future = self._pool.submit(fn)
        future.add_done_callback(lambda _: self._slots.release())
        try:
            return future.result(timeout=deadline.remaining_s())
        except FutureTimeout:
            future.cancel()  # not started yet: never runs; running: stops at its next stage check
            self.abandoned += 1
            raise DeadlineExceeded(f"deadline of {deadline.budget_s * 1000:.0f} ms passed; "
                                   "the model path was abandoned") from None


class _Transitions(pybreaker.CircuitBreakerListener):
    """Logs and counts a breaker's state changes."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else "none"
        self.counts[f"{old}->{new_state.name}"] += 1
        metrics.BREAKER_TRANSITIONS.labels(cb.name, new_state.name).inc()
        metrics.BREAKER_OPEN.labels(cb.name).set(1 if new_state.name == "open" else 0)
        level = logging.WARNING if new_state.name == "open" else logging.INFO
        log.log(level, "breaker %s: %s -> %s (after %d failures in a row)", cb.name, old, new_state.name,
                cb.fail_counter)


class Breaker:
    """A circuit breaker around one dependency, named in its log lines (``model``, ``redis``)."""

    def __init__(self, name: str = "model", fail_max: int = 5, reset_timeout_s: float = 10.0,
                 failures: tuple[type[BaseException], ...] = (Exception,)) -> None:
        """Only exceptions of ``failures`` count (others pass through without touching the state)."""
        self.name = name
        self.transitions: Counter[str] = Counter()  # "closed->open" -> times
        # throw_new_error_on_trip=False: the call that trips the breaker reports its own failure
        # (e.g. "deadline"); the calls after it get the breaker's error ("circuit open").
        self._breaker = pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_timeout_s, name=name,
                                                 listeners=[_Transitions(self.transitions)],
                                                 exclude=[lambda exc: not isinstance(exc, failures)],
                                                 throw_new_error_on_trip=False)

    @property
    def state(self) -> str:
        return str(self._breaker.current_state)

    def call(self, fn: Callable[[], T]) -> T:
        return self._breaker.call(fn)  # type: ignore[no-any-return]

    def snapshot(self) -> dict[str, Any]:
        """State and transition counts, for /health/ready."""
        return {"state": self.state, "transitions": dict(self.transitions)}

    @staticmethod
    def is_open(exc: BaseException) -> bool:
        return isinstance(exc, pybreaker.CircuitBreakerError)

    @classmethod
    def for_redis(cls) -> Breaker:
        """Serving's Redis breaker: 3 Redis errors in a row (timeouts included) skip Redis for 1 s.
        A bad value read from Redis (a bug, not an outage) does not count."""
        return cls("redis", fail_max=3, reset_timeout_s=1.0, failures=(redis.RedisError,))

