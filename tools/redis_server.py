"""Start, reuse and stop Blink's own ``redis-server`` (demo and tests).

When ``redis.url`` / ``REDIS_URL`` is set Blink uses that server and never starts, flushes
or reconfigures it. Otherwise it runs its own server bound to 127.0.0.1 on a free port,
with data and AOF under ``var/redis``; the port and pid are kept in ``var/redis/server.json``
so every Blink process (CLI, Airflow tasks, gunicorn workers) reuses the same one.
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server process this project started; ``stop()`` only ever stops that one."""

    directory: Path
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, directory: Path, port: int | None = None, aof: bool = True) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SetupError(
                "redis-server not found on PATH. Install it (apt-get install -y redis-server) "
                "or set REDIS_URL to an existing Redis 7 server."
            )
        directory.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        args = [
            binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
            "--appendonly", "yes" if aof else "no", "--save", "", "--daemonize", "no",
            "--logfile", str(directory / "redis.log"), "--protected-mode", "yes",
        ]
        # start_new_session: the server outlives the CLI command that started it.
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        server = cls(directory=directory, port=port, pid=proc.pid)
        server.wait_ready()
        return server

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive():
                return
            time.sleep(0.05)
        raise SetupError(f"redis-server on port {self.port} did not answer within {timeout}s; "
                         f"see {self.directory / 'redis.log'}")

    def alive(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def running(cfg: Config) -> RedisServer | None:
    """Blink's own server for this var/ directory, if it is up."""
    path = cfg.layout.redis_state
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    server = RedisServer(directory=path.parent, port=state["port"], pid=state["pid"])
    return server if server.alive() else None


def ensure(cfg: Config) -> str:
    """Return the Redis URL to use, starting Blink's own server if none is configured."""
    if cfg.redis.url:
        return cfg.redis.url
    server = running(cfg)
    if server is None:
        server = RedisServer.start(cfg.layout.redis)
        cfg.layout.redis_state.write_text(json.dumps({"port": server.port, "pid": server.pid}))
    return server.url


def stop(cfg: Config) -> bool:
    """Stop Blink's own server (never one given by REDIS_URL). True if one was stopped."""
    server = running(cfg)
    if server is None:
        return False
    server.stop()
    cfg.layout.redis_state.unlink(missing_ok=True)
    return True
