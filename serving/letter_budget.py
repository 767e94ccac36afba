"""How much the API may write to the dead-letter queue, so one client cannot fill the disk.

Each letter's payload is cut to ``letter_bytes`` (the reason says so). A request whose letters
exceed ``request_bytes`` is refused with 413, and one that would take this worker past
``minute_bytes`` or ``minute_records`` in the last 60 s is refused with 429: in both cases
before anything is written or appended, so a refused request leaves no trace and
sent = accepted + duplicates + dead-lettered still holds when the client retries. The window
is per gunicorn worker (no shared state to fail): the box's cap is ``workers`` times it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from blink.errors import BlinkError
from contracts.dlq import DeadLetter
from serving.body import PayloadTooLarge

WINDOW_S = 60.0


class TooManyRequests(BlinkError):
    """This worker's dead-letter budget for the last minute is spent: retry later."""

    status = 429


@dataclass(frozen=True)
class Hold:
    """Budget taken by one request's letters; given back if the request is refused later (503)."""

    at: float
    records: int
    size: int


class LetterBudget:
    def __init__(self, letter_bytes: int, request_bytes: int, minute_bytes: int, minute_records: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.letter_bytes = letter_bytes
        self.request_bytes = request_bytes
        self.minute_bytes = minute_bytes
        self.minute_records = minute_records
        self.clock = clock
        self.counts: Counter[str] = Counter()  # refused_request / refused_rate / truncated, records
        self._window: deque[Hold] = deque()  # holds of the last minute, oldest first
        self._bytes = self._records = 0  # their totals
        self._lock = threading.Lock()

    def fit(self, letter: DeadLetter) -> DeadLetter:
        """The letter with its payload cut to ``letter_bytes`` (kept whole when it fits)."""
        if len(letter.payload) <= self.letter_bytes:
            return letter
        self.counts["truncated"] += 1
        return replace(letter, payload=letter.payload[:self.letter_bytes],
                       reason=f"{letter.reason}; payload truncated from {len(letter.payload)} to "
                              f"{self.letter_bytes} characters")

    def reserve(self, letters: Sequence[DeadLetter]) -> Hold:
        """Take budget for ``letters`` or refuse the request (413 / 429), counting the refusal."""
        size = sum(len(letter.payload) + len(letter.reason) for letter in letters)
        if size > self.request_bytes:
            self.counts["refused_request"] += len(letters)
            raise PayloadTooLarge(
                f"{len(letters)} invalid records ({size} bytes of dead letters) exceed the {self.request_bytes}-byte "
                f"cap per request; nothing was taken: fix them (first problem: {letters[0].reason[:200]}) "
                "or send fewer per request")
        with self._lock:
            now = self.clock()
            while self._window and self._window[0].at <= now - WINDOW_S:
                self._forget(self._window.popleft())
            if letters and (self._bytes + size > self.minute_bytes or
                            self._records + len(letters) > self.minute_records):
                self.counts["refused_rate"] += len(letters)
                raise TooManyRequests(
                    f"too many invalid records in the last minute (cap {self.minute_records} records / "
                    f"{self.minute_bytes} bytes per worker); nothing was taken: fix the producer, retry later")
            hold = Hold(now, len(letters), size)
            if letters:
                self._window.append(hold)
                self._bytes += size
                self._records += len(letters)
            return hold

    def release(self, hold: Hold) -> None:
        """Give back what ``reserve`` took (the request was refused after all)."""
        with self._lock:
            if hold in self._window:  # empty holds are not kept; old ones may have left the window
                self._window.remove(hold)
                self._forget(hold)

    def _forget(self, hold: Hold) -> None:
        self._bytes -= hold.size
        self._records -= hold.records
