"""`blink serve` and `blink stop` as an operator runs them: real `blink` processes, real
gunicorn on 127.0.0.1, a redis-server the tests start. Logs reach var/logs under --daemon,
a busy port is one clear error, slow clients cannot starve /health/live, and two Blink
servers on one host do not touch each other's processes or sockets."""

from __future__ import annotations

import json
import shutil
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.tools.blink_cli import BIN, blink, env_for
from tools import processes
from tools.redis_server import RedisServer, free_port

pytestmark = pytest.mark.integration
BROKEN = "20990101T0000-broken"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def serve_env(tmp_path: Path, server: RedisServer, name: str) -> dict[str, str]:
    """A var dir whose published version cannot load, so the model loader has something to log."""
    var = tmp_path / name / "var"
    (var / "artifacts" / BROKEN).mkdir(parents=True)
    (var / "artifacts" / BROKEN / "manifest.json").write_text("{}")
    redis.Redis(port=server.port).set(f"{name}:current_version", BROKEN)
    # HOME: where gunicorn's default control socket would go (it must not be created at all)
    return env_for(var, REDIS_URL=server.url, BLINK_REDIS__KEY_PREFIX=name, HOME=str(tmp_path / name),
                   BLINK_SERVING__WORKERS="2")


def var_of(env: dict[str, str]) -> Path:
    return Path(env["BLINK_PATHS__VAR_DIR"])


def wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s")


@pytest.fixture
def daemon(tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[dict[str, str], str]]:
    env = serve_env(tmp_path, redis_server, "opsa")
    port = free_port()
    done = blink("serve", "--daemon", "--port", str(port), env=env)
    assert done.returncode == 0, done.stderr
    assert f"serving on http://127.0.0.1:{port} (pid" in done.stderr
    yield env, f"http://127.0.0.1:{port}"
    blink("stop", env=env)


def test_daemon_logs_model_load_failures_and_writes_owner_only_files(
        daemon: tuple[dict[str, str], str]) -> None:
    env, base = daemon
    log = var_of(env) / "logs" / "serving.log"
    wait_for(lambda: log.exists() and "failed to load" in log.read_text())
    text = log.read_text()
    assert f"version {BROKEN}" in text or "Traceback" in text
    assert "ERROR" in text and "serving.registry" in text
    assert requests.get(f"{base}/health/live", timeout=5).status_code == 200
    # a rejected event is dead-lettered by the daemon (whose umask --daemon would reset to 022)
    r = requests.post(f"{base}/v1/events", json={"event_id": "bad", "event_type": "clik"}, timeout=5)
    assert r.status_code == 400
    letters = [p for p in (var_of(env) / "dlq").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert letters and all(mode(p) == 0o600 for p in letters), [(p.name, oct(mode(p))) for p in letters]
    assert mode(log) == 0o600
    assert not (Path(env["HOME"]) / ".gunicorn").exists()  # no shared control socket


def test_foreground_serve_logs_to_stderr_and_the_file(tmp_path: Path, redis_server: RedisServer) -> None:
    env = serve_env(tmp_path, redis_server, "opsb")
    port = free_port()
    proc = subprocess.Popen([str(BIN / "blink"), "serve", "--port", str(port)], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True).start()
    try:
        wait_for(lambda: any("failed to load" in line for line in lines))
        assert "failed to load" in (var_of(env) / "logs" / "serving.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_busy_port_is_one_clear_error(tmp_path: Path, redis_server: RedisServer) -> None:
    env = serve_env(tmp_path, redis_server, "opsc")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args in (["--daemon"], []):
            done = blink("serve", *args, "--port", str(port), env=env, timeout=60)
            assert done.returncode != 0, (args, done.stderr)
            assert f"port {port} is in use" in done.stderr and "choose --port" in done.stderr, done.stderr
            assert "Connection in use" not in done.stderr + done.stdout
            assert "serving on" not in done.stderr
    assert not (var_of(env) / "gunicorn.pid").exists()


def drip(port: int, stop: threading.Event) -> None:
    """A slowloris client: a request line, then one header byte every half second."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        while not stop.wait(0.5):
            try:
                sock.sendall(b"X")
            except OSError:
                return


def test_two_slow_clients_do_not_starve_health(daemon: tuple[dict[str, str], str]) -> None:
    """Two workers; two clients each holding a connection open by dripping bytes. With sync
    workers both workers are held and /health/live times out; with gthread it answers."""
    env, base = daemon
    port = int(base.rsplit(":", 1)[1])
    stop = threading.Event()
    drippers = [threading.Thread(target=drip, args=(port, stop), daemon=True) for _ in range(2)]
    for t in drippers:
        t.start()
    try:
        time.sleep(1.5)  # both slow requests are being read by now
        for _ in range(10):
            r = requests.get(f"{base}/health/live", timeout=2)
            assert r.status_code == 200
            time.sleep(0.3)
    finally:
        stop.set()
        for t in drippers:
            t.join(timeout=5)


def test_stop_only_stops_this_var_dirs_processes(tmp_path: Path, redis_server: RedisServer,
                                                  daemon: tuple[dict[str, str], str]) -> None:
    env_a, base_a = daemon
    pid_a = int((var_of(env_a) / "gunicorn.pid").read_text())
    env_b = serve_env(tmp_path, redis_server, "opsd")
    port_b = free_port()
    assert blink("serve", "--daemon", "--port", str(port_b), env=env_b).returncode == 0
    pid_b = int((var_of(env_b) / "gunicorn.pid").read_text())
    # a copy of A's var dir (pid file included), as a colleague's backup would be
    copy = tmp_path / "copy" / "var"
    shutil.copytree(var_of(env_a), copy)
    done = blink("stop", env=env_for(copy, REDIS_URL=redis_server.url))
    assert done.returncode == 0 and "left it alone" in done.stderr, done.stderr
    assert processes.alive(pid_a) and requests.get(f"{base_a}/health/live", timeout=5).ok
    # B's stop stops B only
    done = blink("stop", env=env_b)
    assert f"stopped gunicorn (pid {pid_b})" in done.stderr, done.stderr
    assert not processes.alive(pid_b)
    assert processes.alive(pid_a) and requests.get(f"{base_a}/health/live", timeout=5).ok
    # REDIS_URL's server is never Blink's to stop
    assert "no Blink redis-server running" in done.stderr
    assert json.loads(json.dumps(redis.Redis(port=redis_server.port).ping()))


def test_daemon_whose_workers_cannot_boot_fails_with_the_reason(tmp_path: Path, redis_server: RedisServer) -> None:
    """--daemon used to print "serving on" and exit 0 whatever happened to gunicorn next."""
    env = serve_env(tmp_path, redis_server, "opse")
    (var_of(env) / "logs" / "serving.log").mkdir(parents=True)  # the workers cannot open their log
    port = free_port()
    done = blink("serve", "--daemon", "--port", str(port), env=env, timeout=180)
    assert done.returncode == 1, done.stderr
    assert "gunicorn did not start" in done.stderr and "IsADirectoryError" in done.stderr, done.stderr
    assert "serving on" not in done.stderr
    wait_for(lambda: not processes.alive(int((var_of(env) / "gunicorn.pid").read_text() or 0))
             if (var_of(env) / "gunicorn.pid").exists() else True, timeout=30)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing left listening


@pytest.mark.parametrize("token", ["#s3cret", "null", "s3cret #x"])
def test_an_ingest_token_that_yaml_would_drop_keeps_auth_on(tmp_path: Path, redis_server: RedisServer,
                                                            token: str) -> None:
    env = serve_env(tmp_path, redis_server, "opsf") | {"BLINK_SERVING__INGEST_TOKEN": token}
    port = free_port()
    assert blink("serve", "--daemon", "--port", str(port), env=env).returncode == 0
    try:
        event = {"event_id": f"tok-{time.time_ns()}", "user_id": "u1", "session_id": "s1", "item_id": "i1",
                 "event_type": "click", "timestamp": int(time.time() * 1000), "device": "mobile"}
        url = f"http://127.0.0.1:{port}/v1/events"
        assert requests.post(url, json=event, timeout=5).status_code == 401
        assert requests.post(url, json=event, timeout=5, headers={"Authorization": "Bearer s3cret"}).status_code == 401
        r = requests.post(url, json=event, timeout=5, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 202, r.text
    finally:
        blink("stop", env=env)
