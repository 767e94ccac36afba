"""Start, reuse and stop Blink's own ``redis-server`` (demo and tests).

When ``redis.url`` / ``REDIS_URL`` is set Blink uses that server and never starts, flushes
or reconfigures it. Otherwise it runs its own server bound to 127.0.0.1 on a free port,
with data and AOF under ``var/redis``; the port and pid are kept in ``var/redis/server.json``
so every Blink process (CLI, Airflow tasks, gunicorn workers) reuses the same one.

The server reads ``var/redis/redis.conf`` (written owner-only: it holds ``requirepass`` when
``BLINK_REDIS__PASSWORD`` is set, so the password never shows in ``ps``), with ``maxmemory``
and its policy from ``redis.maxmemory`` / ``redis.maxmemory_policy``. The directory is 0700 and
the server runs with umask 077, so the AOF is owner-only too. ``stop`` signals the recorded pid
only if that process runs in this very directory (redis-server works in its ``dir``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from blink.config import Config
from blink.errors import SetupError
from tools import processes

CONF_FILE = "redis.conf"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quote(value: str) -> str:
    """A redis.conf argument: double-quoted, with backslash and quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class RedisServer:
    """A redis-server process this project started; ``stop()`` only ever stops that one."""

    directory: Path
    port: int
    pid: int
    password: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, directory: Path, port: int | None = None, aof: bool = True, password: str | None = None,
              maxmemory: str = "0", maxmemory_policy: str = "noeviction") -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SetupError(
                "redis-server not found on PATH. Install it (apt-get install -y redis-server) "
                "or set REDIS_URL to an existing Redis 7 server."
            )
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        port = port or free_port()
        lines = [
            "bind 127.0.0.1", f"port {port}", f"dir {_quote(str(directory))}",
            f"appendonly {'yes' if aof else 'no'}", 'save ""', "daemonize no",
            f"logfile {_quote(str(directory / 'redis.log'))}", "protected-mode yes",
            f"maxmemory {maxmemory}", f"maxmemory-policy {maxmemory_policy}",
        ]
        if password:
            lines.append(f"requirepass {_quote(password)}")
        conf = directory / CONF_FILE
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("# written by tools/redis_server.py at every start; edits are overwritten\n")
            out.write("\n".join(lines) + "\n")
        conf.chmod(0o600)
        # start_new_session: the server outlives the CLI command that started it.
        # umask 077: the AOF and the log it creates are readable by this user only.
        proc = subprocess.Popen([binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, umask=0o077)
        server = cls(directory=directory, port=port, pid=proc.pid, password=password)
        server.wait_ready()
        return server

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=0.5)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive():
                return
            time.sleep(0.05)
        raise SetupError(f"redis-server on port {self.port} did not answer within {timeout}s; "
                         f"see {self.directory / 'redis.log'}")

    def alive(self) -> bool:
        """True when it answers PING; an authentication failure is a SetupError saying why."""
        try:
            return bool(self.client().ping())
        except redis.RedisError as exc:
            if not _is_auth_error(exc):
                return False
            raise SetupError(
                f"Blink's redis-server on 127.0.0.1:{self.port} refused authentication ({exc}): it was started "
                "with another BLINK_REDIS__PASSWORD (or none). Set the password it was started with, or run "
                "`blink stop` and start again to restart it with the current one.") from None

    def owned(self) -> bool:
        """This pid is a process working in this server's directory (redis-server chdirs to its dir)."""
        return processes.cwd(self.pid) == self.directory.resolve()

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            if not processes.alive(self.pid):
                return
            time.sleep(0.05)


def recorded(cfg: Config) -> RedisServer | None:
    """The server var/redis/server.json names (it may be dead, or another instance's)."""
    path = cfg.layout.redis_state
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    password = cfg.redis.password.get_secret_value() if cfg.redis.password else None
    return RedisServer(directory=path.parent, port=state["port"], pid=state["pid"], password=password)


def running(cfg: Config) -> RedisServer | None:
    """Blink's own server for this var/ directory, if it is up (and really this directory's)."""
    server = recorded(cfg)
    if server is None or not processes.alive(server.pid) or not server.owned():
        return None
    return server if server.alive() else None


def ensure(cfg: Config) -> str:
    """Return the Redis URL to use, starting Blink's own server if none is configured.

    A server given by ``redis.url`` is only checked for authentication (a wrong or missing
    password is a clear SetupError here, not a swallowed error in every request later).
    """
    if cfg.redis.url:
        _check_auth(cfg)
        return cfg.redis.url
    server = running(cfg)
    if server is None:
        cfg.var.mkdir(parents=True, exist_ok=True)
        server = RedisServer.start(cfg.layout.redis, password=server_password(cfg),
                                   maxmemory=cfg.redis.maxmemory, maxmemory_policy=cfg.redis.maxmemory_policy)
        cfg.layout.redis_state.write_text(json.dumps({"port": server.port, "pid": server.pid}))
    return server.url


def server_password(cfg: Config) -> str | None:
    return cfg.redis.password.get_secret_value() if cfg.redis.password else None


def _is_auth_error(exc: redis.RedisError) -> bool:
    return isinstance(exc, redis.AuthenticationError) or (
        isinstance(exc, redis.ResponseError) and any(word in str(exc) for word in ("NOAUTH", "AUTH", "WRONGPASS")))


def _check_auth(cfg: Config) -> None:
    from blink import redis_client

    try:
        redis_client.client(cfg, timeout_s=2.0).ping()
    except redis.RedisError as exc:
        if _is_auth_error(exc):
            raise SetupError(f"Redis at {cfg.redis.url} refused authentication ({exc}): set "
                             "BLINK_REDIS__PASSWORD to its password") from None
        # unreachable now: serving answers from its fallback and /health/ready says why


def stop(cfg: Config) -> str:
    """Stop Blink's own server (never one given by REDIS_URL); says what it did."""
    server = recorded(cfg)
    if server is None or not processes.alive(server.pid):
        cfg.layout.redis_state.unlink(missing_ok=True)
        return "no Blink redis-server running"
    if not processes.can_verify():
        return f"cannot verify that pid {server.pid} is this var dir's redis-server (no /proc): stop it by hand"
    if not server.owned():
        cfg.layout.redis_state.unlink(missing_ok=True)
        return (f"{cfg.layout.redis_state} named pid {server.pid}, which is not a redis-server working in "
                f"{server.directory} (another instance's, or a copied var dir): left it alone")
    server.stop()
    cfg.layout.redis_state.unlink(missing_ok=True)
    return "stopped Blink's redis-server"
