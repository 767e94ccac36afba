"""The Redis client every Blink process uses (jobs, gunicorn workers, CLI).

Which server: ``redis.url`` / ``REDIS_URL`` when set; otherwise Blink's own dev server for
this var/ directory, found through its state file (``tools.redis_server`` starts it and
writes the file). The core only reads that file, it never starts a server.
"""

from __future__ import annotations

import json

import redis

from blink.config import Config
from blink.errors import SetupError


def own_server_url(cfg: Config) -> str | None:
    """URL of Blink's own server recorded for this var/ directory, if one was started."""
    state = cfg.layout.redis_state
    if not state.exists():
        return None
    return f"redis://127.0.0.1:{json.loads(state.read_text())['port']}/0"


def url(cfg: Config) -> str:
    """The Redis URL to use; SetupError with the fix when there is none."""
    found = cfg.redis.url or own_server_url(cfg)
    if found is None:
        raise SetupError("no Redis server: set REDIS_URL, or let `blink serve`, `blink run-dag` or "
                         "`make demo` start Blink's own redis-server for this var/ directory")
    return found


def client(cfg: Config, url_: str | None = None, timeout_s: float | None = None) -> redis.Redis:
    """A client honouring password, TLS and timeout settings.

    Serving uses the short configured timeout (a slow Redis must not hold a request);
    batch jobs pass a longer ``timeout_s`` for bulk writes.
    """
    target = url_ or url(cfg)
    password = cfg.redis.password.get_secret_value() if cfg.redis.password else None
    timeout = timeout_s if timeout_s is not None else cfg.redis.socket_timeout_ms / 1000
    kwargs: dict[str, object] = {"socket_timeout": timeout, "socket_connect_timeout": max(timeout, 1.0)}
    if password:
        kwargs["password"] = password
    if cfg.redis.tls and target.startswith("redis://"):
        target = "rediss://" + target[len("redis://"):]
    return redis.Redis.from_url(target, **kwargs)  # type: ignore[arg-type]
