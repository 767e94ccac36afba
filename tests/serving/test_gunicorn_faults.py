"""Faults against the real app under gunicorn (conf/gunicorn.conf.py, 2 workers) over HTTP on
127.0.0.1: Redis hung (SIGSTOP) under load, a worker started while Redis is down with a corrupt
newest version on disk, and slow clients (slowloris). A real redis-server, real version
directories (tests/serving/model_files.py); every request bounded by a client timeout."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from blink import config, layout
from blink.keys import Keys
from blink.store import RedisStore
from tests.serving.model_files import write_version
from tests.serving.test_events import event
from tools.redis_server import RedisServer, free_port

pytestmark = pytest.mark.integration
BIN = Path(config.ROOT) / ".venv" / "bin"


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]


def start_gunicorn(tmp_path: Path, redis_url: str, *extra: str) -> Server:
    port = free_port()
    env = {**os.environ, "BLINK_ENV": "test", "BLINK_PATHS__VAR_DIR": str(tmp_path / "var"), "REDIS_URL": redis_url,
           "BLINK_SERVING__PORT": str(port), "BLINK_SERVING__WORKERS": "2"}
    proc = subprocess.Popen([str(BIN / "gunicorn"), "-c", "conf/gunicorn.conf.py", "--no-control-socket", *extra,
                             "serving.wsgi:app"], env=env, cwd=config.ROOT,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "gunicorn.log", "wb"))  # noqa: SIM115
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            if requests.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return Server(base, proc)
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop(Server(base, proc))
    pytest.fail("gunicorn never became ready: " + (tmp_path / "gunicorn.log").read_text()[-2000:])


def stop(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=10)


@pytest.fixture
def redis_up(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer.start(tmp_path / "redis", aof=False)
    yield server
    os.kill(server.pid, signal.SIGCONT)  # never leave it stopped
    server.stop()


def publish(tmp_path: Path, server: RedisServer) -> None:
    """v1 and v2 on disk; v2 published in Redis with a head list for u0."""
    artifacts = tmp_path / "var" / "artifacts"
    write_version(artifacts, "v1", published_at_ms=1000)
    write_version(artifacts, "v2", published_at_ms=2000)
    store = RedisStore(redis.Redis(port=server.port), Keys("blink"))
    store.publish("v2", [("u0", [("i9", 2.0), ("i8", 1.0), ("i7", 0.5)])], [], {})


def timed(method: str, url: str, **kwargs: Any) -> tuple[int, float, dict[str, Any]]:
    started = time.perf_counter()
    try:
        r = requests.request(method, url, timeout=10, **kwargs)
    except requests.RequestException:
        return 0, time.perf_counter() - started, {}
    return r.status_code, time.perf_counter() - started, r.json()


def test_http_redis_hung_under_load_costs_at_most_the_deadline(tmp_path: Path, redis_up: RedisServer) -> None:
    publish(tmp_path, redis_up)
    server = start_gunicorn(tmp_path, redis_up.url)
    try:
        assert timed("GET", f"{server.base}/v1/recommendations/u0?k=3")[2]["path"] == "head"
        os.kill(redis_up.pid, signal.SIGSTOP)
        calls = [("GET", f"{server.base}/v1/recommendations/{u}?k=5", {}) for u in ("u0", "u1", "nobody")] * 40
        calls += [("POST", f"{server.base}/v1/events", {"json": event(n)}) for n in range(30)]
        with ThreadPoolExecutor(8) as pool:  # 8 clients against 2 sync workers
            results = list(pool.map(lambda c: (c[0], *timed(c[0], c[1], **c[2])), calls))
        gets = [r for r in results if r[0] == "GET"]
        posts = [r for r in results if r[0] == "POST"]
        assert all(status == 200 and len(body["items"]) == 5 for _, status, _, body in gets)
        assert all(status == 503 for _, status, _, _ in posts)  # nothing taken: the client retries
        server_ms = sorted(body["latency_ms"] for _, _, _, body in gets)
        client_s = sorted(elapsed for _, _, elapsed, _ in results)
        print(f"\nRedis SIGSTOP, {len(results)} requests: server p50 {server_ms[len(server_ms) // 2]:.1f} ms, "
              f"max {server_ms[-1]:.1f} ms; client max {client_s[-1] * 1000:.0f} ms")
        assert server_ms[-1] < 1000  # generous (deadline 150 ms); it was 11.8 s before
        os.kill(redis_up.pid, signal.SIGCONT)
        time.sleep(1.5)  # the Redis breaker's reset timeout
        answers = [timed("GET", f"{server.base}/v1/recommendations/u0?k=3")[2]["path"] for _ in range(6)]
        assert answers[-1] == "head"  # each worker probed Redis again and closed its breaker
        assert timed("POST", f"{server.base}/v1/events", json=event(999))[0] == 202
    finally:
        stop(server)
    logged = (tmp_path / "gunicorn.log").read_text()  # gunicorn's error log: the workers' own lines too
    assert "breaker redis: closed -> open" in logged and "store read failed" in logged
    assert "breaker redis: half-open -> closed" in logged and "serving model version v2 (from store)" in logged


def test_http_worker_started_while_redis_is_down_serves_the_newest_good_version(tmp_path: Path) -> None:
    artifacts = tmp_path / "var" / "artifacts"
    write_version(artifacts, "v1", published_at_ms=1000)
    write_version(artifacts, "v2", published_at_ms=2000)
    broken = write_version(artifacts, "v3", published_at_ms=3000) / layout.EMBEDDINGS
    broken.write_bytes(broken.read_bytes()[:100])  # the newest version on disk is corrupt
    server = start_gunicorn(tmp_path, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        status, _, body = timed("GET", f"{server.base}/v1/recommendations/u1?k=5")
        assert status == 200 and body["model_version"] == "v2" and len(body["items"]) == 5
        assert body["path"] == "tail"
        status, _, ready = timed("GET", f"{server.base}/health/ready")
        assert status == 200 and (ready["model_version"], ready["source"], ready["store"]) == ("v2", "disk", False)
        assert "store unreachable" in ready["degraded"] and "newest loadable version on local disk" in ready["degraded"]
    finally:
        stop(server)


def slow_clients(base: str, n: int) -> list[socket.socket]:
    """``n`` connections that send the start of a request and then nothing (slowloris)."""
    host, port = base.removeprefix("http://").split(":")
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        socks.append(s)
    return socks


def live_while_slow_clients_hold_connections(tmp_path: Path, redis_url: str, *extra: str) -> list[int]:
    server = start_gunicorn(tmp_path, redis_url, *extra)
    socks = slow_clients(server.base, 4)
    try:
        time.sleep(0.5)
        statuses = []
        for _ in range(3):
            try:
                statuses.append(requests.get(f"{server.base}/health/live", timeout=2).status_code)
            except requests.RequestException:
                statuses.append(0)
        return statuses
    finally:
        for s in socks:
            s.close()
        stop(server)


def test_http_slow_clients_do_not_starve_health_live_with_the_shipped_config(tmp_path: Path,
                                                                              redis_up: RedisServer) -> None:
    publish(tmp_path, redis_up)
    assert live_while_slow_clients_hold_connections(tmp_path, redis_up.url) == [200, 200, 200]


def test_http_slow_clients_do_not_starve_health_live_with_gthread_workers(tmp_path: Path,
                                                                           redis_up: RedisServer) -> None:
    """The recommended setting: gthread workers hand a connection to a thread only once it has
    data, and give a slow one back to the poller, so slow clients cannot hold every worker."""
    publish(tmp_path, redis_up)
    statuses = live_while_slow_clients_hold_connections(tmp_path, redis_up.url, "--worker-class", "gthread",
                                                        "--threads", "8")
    assert statuses == [200, 200, 200]


def test_http_hostile_input_gets_clear_4xx_never_a_500(tmp_path: Path, redis_up: RedisServer) -> None:
    """What the issue's fuzzing found, over real HTTP: a chunked body over the limit (no
    Content-Length), JSON nested 100k deep, a lone surrogate, invalid UTF-8 in the URL."""
    publish(tmp_path, redis_up)
    server = start_gunicorn(tmp_path, redis_up.url)
    url = f"{server.base}/v1/events"
    json_header = {"Content-Type": "application/json"}
    try:
        def chunks() -> Iterator[bytes]:
            yield b"["
            for _ in range(40):
                yield b" " * 65536  # 2.5 MiB in all, sent chunked
            yield b"]"

        r = requests.post(url, data=chunks(), headers=json_header, timeout=10)
        assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge", r.text
        r = requests.post(url, data="[" * 100_000 + "]" * 100_000, headers=json_header, timeout=10)
        assert r.status_code == 400 and "levels deep" in r.json()["message"]
        r = requests.post(url, data='{"event_id": "\\ud800"}', headers=json_header, timeout=10)
        assert r.status_code == 400 and r.json()["rejected"] == 1
        r = requests.get(f"{server.base}/v1/recommendations/u%ED%A0%80", timeout=10)
        assert r.status_code == 400 and "not valid UTF-8" in r.json()["message"]
        r = requests.post(url, json=event(1, colour="red"), timeout=10)
        assert r.status_code == 202 and r.json()["dropped_fields"][0]["fields"] == ["colour"]
    finally:
        stop(server)


def test_http_metrics_aggregate_every_worker(tmp_path: Path, redis_up: RedisServer) -> None:
    """prometheus-client multiprocess mode: /metrics, answered by one worker, counts the
    requests both workers served."""
    from prometheus_client.parser import text_string_to_metric_families

    publish(tmp_path, redis_up)
    server = start_gunicorn(tmp_path, redis_up.url)
    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda n: requests.get(f"{server.base}/v1/recommendations/u{n % 7}",
                                                            timeout=5).status_code, range(60)))
        assert statuses == [200] * 60
        text = requests.get(f"{server.base}/metrics", timeout=5).text
    finally:
        stop(server)
    values = [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]
    assert sum(v for n, _, v in values if n == "blink_request_seconds_count") == 60
    assert any(n == "blink_model_version_info" and v == 1 for n, _, v in values)
    # multiprocess mode is on: each worker wrote its own sample files, the answer summed them
    files = list((tmp_path / "var" / "prometheus").glob("*.db"))
    assert len({f.stem.rsplit("_", 1)[-1] for f in files}) >= 2
