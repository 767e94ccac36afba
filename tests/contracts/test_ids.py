"""One id rule: the HTTP API and the data contract accept and reject exactly the same ids."""

from __future__ import annotations

from typing import Any

import pytest

from blink.config import ServingConfig
from blink.errors import BadRequest
from contracts.ids import MAX_ID_LEN, id_problem
from contracts.validation import validate
from serving.router import Router

NOW = 1_700_000_000_000
EVENT = {"event_id": "e-1", "session_id": "s-1", "item_id": "i-1", "event_type": "view",
         "timestamp": NOW - 60_000, "device": "mobile"}

IDS = [  # (id, valid?)
    ("ok", True),
    ("x" * MAX_ID_LEN, True),
    ("é-ü 中", True),  # non-ASCII and inner spaces are fine
    ("u\x85x", False),  # C1 control (NEL): the API used to accept it
    ("a\x00", False),
    ("u\x07", False),
    ("a\x7fb", False),
    (" x", False),
    ("x\t", False),
    ("x" * (MAX_ID_LEN + 1), False),
    ("", False),
    ("\ud800", False),  # lone surrogate: no UTF-8 encoding, so no Redis key or Parquet string
]


ROUTER = Router(ServingConfig.model_validate({}), store=None, registry=None)  # type: ignore[arg-type]


def api_accepts(value: str) -> bool:
    try:
        ROUTER.check_id(value)
    except BadRequest:
        return False
    return True


def contract_accepts(value: str, field: str) -> bool:
    record: dict[str, Any] = {**EVENT, field: value}
    return not validate("event", record, now_ms=NOW)


@pytest.mark.parametrize(("value", "valid"), IDS)
def test_api_and_contract_reject_the_same_ids(value: str, valid: bool) -> None:
    assert (id_problem(value) is None) == valid
    assert api_accepts(value) == valid
    for field in ("event_id", "user_id", "session_id", "item_id"):
        assert contract_accepts(value, field) == valid, field


def test_the_api_says_which_id_and_what_is_wrong() -> None:
    with pytest.raises(BadRequest, match=r"session_id: contains a control character \(U\+0085 at position 1\)"):
        ROUTER.check_id("u\x85x", "session_id")


def test_an_empty_nullable_id_is_told_to_send_null() -> None:
    (problem,) = validate("event", {**EVENT, "user_id": ""}, now_ms=NOW)
    assert problem == "user_id: must not be empty, send null if there is none"
