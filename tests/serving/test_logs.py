"""The serving loggers reach var/logs/serving.log and stderr: every logger under serving, blink
and contracts (store read failures in serving.router, model load failures in serving.registry)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from blink import config
from serving import logs


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in logs.LOGGERS}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        for h in logger.handlers:
            h.close()
        logger.handlers, logger.level, logger.propagate = handlers, level, propagate


def test_serving_failures_reach_the_file_and_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     restore_loggers: None) -> None:
    cfg = config.load("test", {"BLINK_PATHS__VAR_DIR": str(tmp_path / "var")})
    path = logs.setup(cfg)
    logs.setup(cfg)  # twice (a re-import): still one line per record
    logging.getLogger("serving.router").warning("store read failed: %s", "Timeout reading from socket")
    logging.getLogger("serving.registry").error("version v1 failed to load: truncated")
    logging.getLogger("contracts.dlq").info("dead-lettered 1")
    logging.getLogger("serving.router").debug("not at INFO")
    text = path.read_text()
    assert path == tmp_path / "var" / "logs" / "serving.log"
    for line in ("WARNING", "serving.router: store read failed: Timeout", "ERROR",
                 "serving.registry: version v1 failed to load", "contracts.dlq: dead-lettered 1"):
        assert line in text
    assert "not at INFO" not in text and text.count("store read failed") == 1
    assert capsys.readouterr().err.count("store read failed") == 1
