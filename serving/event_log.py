"""Live events: contract check at the door, exactly-once append to the Redis event stream.

Used by ``POST /v1/events``. A valid event is appended only if its event id was not seen
before (one Lua script does check-and-append atomically, so concurrent retries of the same
event land once). What is appended is the record in the contract's shape (``normalise``):
fields the contract does not define are dropped, and the answer names them. Invalid events
go to the dead-letter queue with their reason, within the API's dead-letter budget
(serving/letter_budget.py), and only once the valid ones are in the stream: a batch refused
with 503 (stream unreachable) leaves no letters, so its retry does not dead-letter twice.
The batch ``ingest`` task drains the stream into the lake (jobs/stream.py).

A login-merge (an event's ``user_id`` joining its session to that user, so the session drives
the user's next page) is applied to the live sessions only for events accepted with
``merge_users=True``: the app passes it for a producer that authenticated with
``serving.ingest_token`` (or when no token is configured, in dev and test). Otherwise the
event is stored as sent, and its session advances without a user.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import redis

from blink.errors import NotReady
from blink.keys import EVENTS, SEEN, Keys
from contracts import intake
from contracts.dlq import DeadLetterQueue
from contracts.validation import normalise, unknown_fields
from serving.breaker import Breaker
from serving.letter_budget import Hold, LetterBudget

log = logging.getLogger(__name__)
SEEN_TTL_S = 7 * 24 * 3600  # duplicate window: a retry a week later is a new event
STREAM_FULL = -1  # the script's answer when the stream holds its cap of events not yet drained
# KEYS[1] = seen-marker, KEYS[2] = stream; ARGV[1] = ttl, ARGV[2] = event JSON, ARGV[3] = cap (0 = none).
# Full is checked first, so a refused event is not marked seen and its retry is appended.
_APPEND_ONCE = """
local cap = tonumber(ARGV[3])
if cap > 0 and redis.call('XLEN', KEYS[2]) >= cap then
  return -1
end
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
end
return false
"""


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    dropped_fields: list[dict[str, Any]] = field(default_factory=list)  # unknown fields not stored

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected,
                "errors": self.errors, "dropped_fields": self.dropped_fields}


class EventLog:
    def __init__(self, client: redis.Redis, keys: Keys, dlq: DeadLetterQueue,
                 on_accepted: Callable[[list[Mapping[str, Any]]], None] | None = None,
                 breaker: Breaker | None = None, budget: LetterBudget | None = None,
                 max_events: int = 0) -> None:
        self.r = client
        self.k = keys
        self.dlq = dlq
        self.on_accepted = on_accepted  # e.g. the session updater: sees each new event exactly once
        self.breaker = breaker or Breaker.for_redis()
        self.budget = budget  # None: letters unbounded (batch tools, tests of accounting)
        # Events the stream may hold before ingest drains it (0 = no cap). Past it new events are
        # refused with 503, never trimmed: an accepted event is never dropped to make room.
        self.max_events = max_events
        self.refused_full = 0  # events refused because the stream was full
        self._append = client.register_script(_APPEND_ONCE)

    @property
    def stream(self) -> str:
        return self.k.global_(EVENTS)

    def accept(self, records: Sequence[Any], source: str = "api", merge_users: bool = False) -> BatchResult:
        """Validate, append the valid ones once, then dead-letter the invalid. Counts add up.
        ``merge_users``: the producer may join sessions to users (login-merge), see above.

        Raises (nothing taken, nothing dead-lettered): ``NotReady`` (503) when the stream is
        unreachable or its breaker is open; the budget's 413 / 429 when the letters would not fit.
        """
        checked = intake.split(records, "event", source)
        result = BatchResult(rejected=len(checked.rejected))
        for r in checked.rejected:
            event_id = r.record.get("event_id") if isinstance(r.record, Mapping) else None
            result.errors.append({"index": r.index, "event_id": event_id, "errors": r.problems})
        letters, budget = checked.letters, self.budget
        hold = None
        if budget is not None:
            letters = [budget.fit(letter) for letter in letters]
            hold = budget.reserve(letters)
        valid = checked.valid
        try:
            outcomes = self.breaker.call(lambda: self._append_all(valid)) if valid else []
        except Exception as exc:  # redis errors, or the breaker's own when it is open
            if budget is not None and hold is not None:
                budget.release(hold)
            if not (isinstance(exc, redis.RedisError) or Breaker.is_open(exc)):
                raise
            log.warning("event stream unavailable: %s", exc)
            reason = "skipped while Redis is failing" if Breaker.is_open(exc) else str(exc)
            # Nothing dead-lettered; an event the stream did take before failing is a duplicate on retry.
            raise NotReady(f"event stream unavailable ({reason}); retry the whole request later, "
                           "nothing was lost") from None
        if STREAM_FULL in outcomes:
            self._refuse_full(valid, outcomes, hold, merge_users)
        if letters:
            self.dlq.add(letters)
        index_of = {id(r): i for i, r in enumerate(records)}
        fresh = []
        for record, outcome in zip(valid, outcomes, strict=True):
            dropped = unknown_fields("event", record)
            if dropped:
                result.dropped_fields.append({"index": index_of.get(id(record)), "event_id": record["event_id"],
                                              "fields": dropped})
            if outcome:
                result.accepted += 1
                fresh.append(record)
            else:
                result.duplicates += 1
        self._advance_sessions(fresh, merge_users)
        return result

    def _advance_sessions(self, fresh: list[Mapping[str, Any]], merge_users: bool) -> None:
        if not merge_users:  # no login-merge: the session advances as an anonymous one
            fresh = [{**event, "user_id": None} if event.get("user_id") else event for event in fresh]
        if fresh and self.on_accepted is not None:
            try:
                self.breaker.call(lambda: self.on_accepted(fresh))  # type: ignore[misc]
            except Exception:  # noqa: BLE001 - the events are safe in the stream; sessions are best effort
                log.exception("session update failed")

    def _append_all(self, valid: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Append each record (in the contract's shape) unless its event id was seen or the stream
        is full (``STREAM_FULL``); one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for record in valid:
            self._append(keys=[self.k.global_(SEEN, str(record["event_id"])), self.stream],
                         args=[SEEN_TTL_S, json.dumps(normalise("event", record)), self.max_events], client=pipe)
        return pipe.execute()  # type: ignore[no-any-return]

    def _refuse_full(self, valid: Sequence[Mapping[str, Any]], outcomes: list[Any], hold: Hold | None,
                     merge_users: bool) -> NoReturn:
        """The stream reached its cap during this batch: 503, no dead letters. Events appended
        before it filled are kept (and their sessions advanced); the retry counts them as duplicates."""
        if self.budget is not None and hold is not None:
            self.budget.release(hold)
        full = sum(1 for o in outcomes if o == STREAM_FULL)
        self.refused_full += full
        self._advance_sessions([r for r, o in zip(valid, outcomes, strict=True) if o not in (None, STREAM_FULL)],
                               merge_users)
        log.warning("event stream full (%d events waiting for ingest): %d events refused", self.max_events, full)
        raise NotReady(f"the event stream holds its cap of {self.max_events} events waiting for the batch "
                       "ingest; retry the whole request later, nothing was lost")
