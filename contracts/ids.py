"""The id rule: what an event, user, session or item id may look like.

One function for the whole system: contract validation (``contracts.validation``) applies it
to every id field of every record, and the HTTP API (``serving.router``) to the ids in a
request, so an id the API accepts is one the data accepts, and the other way round.
"""

from __future__ import annotations

import re

MAX_ID_LEN = 128
EMPTY = "must not be empty"
RULE = (f"non-empty, at most {MAX_ID_LEN} characters, no control characters, no lone surrogates, "
        "no leading or trailing whitespace")

# Unicode category Cc is exactly these two ranges; a regex is much faster than unicodedata.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A lone surrogate has no UTF-8 encoding: as a Redis key or a Parquet string it would fail
# far from the request that brought it in.
SURROGATE = re.compile(r"[\ud800-\udfff]")


def id_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an id, saying how to fix it; None when it is a valid id.

    The message has no field name: callers prefix it (``"user_id: " + problem``).
    """
    if not value:
        return EMPTY
    if len(value) > MAX_ID_LEN:
        return f"too long ({len(value)} characters), at most {MAX_ID_LEN} allowed"
    for pattern, what, fix in ((_CONTROL, "a control character", "remove it"),
                               (SURROGATE, "a lone surrogate", "send valid UTF-8 text")):
        bad = pattern.search(value)
        if bad:
            return f"contains {what} (U+{ord(bad.group()):04X} at position {bad.start()}), {fix}"
    if value[0].isspace() or value[-1].isspace():
        return "has leading or trailing whitespace, strip it"
    return None
