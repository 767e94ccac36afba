"""Request bodies, read defensively: bounded size (chunked or not), bounded nesting, then JSON.

The nesting depth is measured on the raw bytes *before* any recursive parsing, so a body of
100k brackets is a clear 400 instead of a RecursionError deep inside the JSON decoder. An
event is at most three levels deep (a list of objects whose ``context`` is an object), so
``MAX_DEPTH`` leaves room for honest mistakes and none for pathological input.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request

from blink.errors import BadRequest, BlinkError

MAX_DEPTH = 8
_STEP = np.zeros(256, np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_SPECIAL = _STEP != 0
_SPECIAL[[_QUOTE, _BACKSLASH]] = True
_CHUNK = 64 * 1024


class PayloadTooLarge(BlinkError):
    """The request body is over the size limit (whether or not it came chunked)."""

    status = 413


def read_limited(request: Request, limit: int) -> bytes:
    """At most ``limit`` bytes of ``request``'s body; ``PayloadTooLarge`` as soon as there are more.

    Reads in chunks until the stream ends, so a chunked body without Content-Length is
    bounded the same way as one that announces its length.
    """
    too_large = PayloadTooLarge(f"the body is over {limit} bytes; send fewer events per request")
    parts: list[bytes] = []
    size = 0
    try:  # werkzeug's own limit (MAX_CONTENT_LENGTH) may say it first: same answer
        stream = request.stream
        while chunk := stream.read(min(_CHUNK, limit + 1 - size)):
            size += len(chunk)
            if size > limit:
                raise too_large
            parts.append(chunk)
    except RequestEntityTooLarge:
        raise too_large from None
    return b"".join(parts)


def depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text ``raw`` (brackets inside strings ignored).

    Linear, in NumPy, over the bytes that matter (brackets, quotes, backslashes): a quote opens
    or closes a string unless an odd number of backslashes right before it escapes it. (A regex
    over strings is quadratic on unterminated ones.) On text that is not valid JSON this is only
    an estimate, and the parser rejects that text anyway.
    """
    b = np.frombuffer(raw, np.uint8)
    pos = np.flatnonzero(_SPECIAL[b])
    if not pos.size:
        return 0
    c = b[pos]
    quote = c == _QUOTE
    backslash = c == _BACKSLASH
    if backslash.any():  # most bodies have none: skip finding escaped quotes
        index = np.arange(pos.size)
        # A run of backslashes: consecutive in the text. run_start[i] = where the run through i began.
        continues = np.zeros(pos.size, bool)
        continues[1:] = backslash[1:] & backslash[:-1] & (pos[1:] == pos[:-1] + 1)
        run_start = np.maximum.accumulate(np.where(continues, 0, index))
        escaped = np.zeros(pos.size, bool)  # a quote right after an odd run of backslashes
        escaped[1:] = backslash[:-1] & (pos[:-1] == pos[1:] - 1) & ((index[:-1] - run_start[:-1]) % 2 == 0)
        quote &= ~escaped
    inside = (np.cumsum(quote) - quote) % 2 == 1  # after an opening quote, up to its closing one
    steps = _STEP[c].astype(np.int32)  # at most 1 MiB of brackets: no overflow
    steps[inside] = 0
    return int(max(np.cumsum(steps).max(), 0))


def parse_json(raw: bytes, what: str) -> Any:
    """The JSON value in ``raw``, or ``BadRequest`` saying what is wrong with it (never a 500)."""
    found = depth(raw)
    if found > MAX_DEPTH:
        raise BadRequest(f"the body nests arrays/objects {found} levels deep, at most {MAX_DEPTH} allowed; "
                         f"send {what}")
    try:
        text = raw.decode("utf-8")
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest(f"the body must be JSON: {what}") from None
