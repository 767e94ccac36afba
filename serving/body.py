"""Request bodies, read defensively: bounded size (chunked or not), bounded nesting, then JSON.

The nesting depth is measured on the raw bytes *before* any recursive parsing, so a body of
100k brackets is a clear 400 instead of a RecursionError deep inside the JSON decoder. An
event is at most three levels deep (a list of objects whose ``context`` is an object), so
``MAX_DEPTH`` leaves room for honest mistakes and none for pathological input.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request

from blink.errors import BadRequest, BlinkError

MAX_DEPTH = 8
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)  # a JSON string, escapes included
_STEP = np.zeros(256, np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
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
    """How deeply arrays and objects nest in the JSON text ``raw`` (brackets inside strings ignored)."""
    steps = _STEP[np.frombuffer(_STRING.sub(b'""', raw), np.uint8)]
    steps = steps[steps != 0]
    return int(np.cumsum(steps, dtype=np.int64).max()) if steps.size else 0


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
