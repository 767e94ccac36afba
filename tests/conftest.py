"""Shared fixtures: a real redis-server started by the tests, on a free port, in a tmp dir.

Tests never touch a server they did not start (the machine's own Redis on 6379 included).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from blink.redis_server import RedisServer

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# py4j logs "Closing down clientserver connection" from __del__ at interpreter exit, after
# pytest closed its streams; that noise is not a failure, so keep py4j at WARNING.
logging.getLogger("py4j").setLevel(logging.WARNING)
# Airflow imported in-process (DagBag test) must not write to ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="blink-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer.start(tmp_path_factory.mktemp("redis"), aof=False)
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    client.flushdb()  # our own throwaway server: safe to flush between tests
    yield client
    client.close()


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point Blink's var/ at a temp dir for this test."""
    monkeypatch.setenv("BLINK_PATHS__VAR_DIR", str(tmp_path / "var"))
    return tmp_path / "var"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop a SparkSession the tests started, before interpreter teardown closes its logs."""
    import sys

    if "pyspark.sql" in sys.modules:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
