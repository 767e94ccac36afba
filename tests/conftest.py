"""Shared fixtures: a real redis-server started by the tests, on a free port, in a tmp dir.

Tests never touch a server they did not start (the machine's own Redis on 6379 included).

Markers are checked, not hoped: a test not marked ``integration`` fails loudly if it starts
redis-server, gunicorn or the ``blink`` CLI as a process, requests the ``redis_server``
fixture, starts a SparkSession or builds an Airflow DagBag. So ``make test-fast``
(``-m "not slow and not integration"``) cannot quietly depend on any of them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tools.redis_server import RedisServer

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# py4j logs "Closing down clientserver connection" from __del__ at interpreter exit, after
# pytest closed its streams; that noise is not a failure, so keep py4j at WARNING.
logging.getLogger("py4j").setLevel(logging.WARNING)
# Airflow imported in-process (DagBag test) must not write to ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="blink-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

# Programs only an integration test may start as a process.
INTEGRATION_PROGRAMS = ("redis-server", "gunicorn", "blink")
INTEGRATION_MODULES = ("tools.cli", "gunicorn")  # ... or as `python -m <module>`
SELECTS_INTEGRATION = pytest.StashKey[bool]()


def _mark_it(what: str) -> None:
    """Fail the current test: it uses ``what`` but is not marked integration."""
    pytest.fail(f"this test {what} but is not marked integration: add `pytestmark = "
                "pytest.mark.integration` to its module (or @pytest.mark.integration to the test, "
                "or marks=pytest.mark.integration to its pytest.param)", pytrace=False)


def _is_integration(item: pytest.Item) -> bool:
    return item.get_closest_marker("integration") is not None


def _program(args: Any) -> tuple[str, list[str]]:
    argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    argv = [os.fsdecode(a) for a in argv]
    if len(argv) == 1:
        argv = argv[0].split()  # a shell=True string, or a bare program
    return (Path(argv[0]).name if argv else ""), argv


class _GuardedPopen(subprocess.Popen):
    def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
        name, argv = _program(args)
        module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
        if name in INTEGRATION_PROGRAMS or module in INTEGRATION_MODULES:
            _mark_it(f"starts {' '.join(argv[:3])!r} as a process")
        super().__init__(args, *rest, **kwargs)


def _spark_running() -> bool:
    if "pyspark" not in sys.modules:
        return False
    from pyspark import SparkContext

    return SparkContext._active_spark_context is not None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Remember, after -m / -k deselection, whether any selected test may use Redis."""
    config.stash[SELECTS_INTEGRATION] = any(_is_integration(item) for item in items)


@pytest.fixture(autouse=True)
def _integration_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test not marked integration may not start the things only integration tests may."""
    if _is_integration(request.node):
        yield
        return
    if "redis_server" in request.fixturenames:
        _mark_it("uses the redis_server fixture")
    monkeypatch.setattr(subprocess, "Popen", _GuardedPopen)
    spark_before, dagbag_before = _spark_running(), "airflow.dag_processing.dagbag" in sys.modules
    yield
    if not spark_before and _spark_running():
        _mark_it("started a SparkSession")
    if not dagbag_before and "airflow.dag_processing.dagbag" in sys.modules:
        _mark_it("loaded an Airflow DagBag")


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not request.config.stash.get(SELECTS_INTEGRATION, True):
        pytest.fail("redis_server was requested in a run that selected no integration test "
                    f"(-m {request.config.getoption('markexpr')!r}): the test asking for it is missing "
                    "pytest.mark.integration", pytrace=False)
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
    if "pyspark.sql" in sys.modules:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
