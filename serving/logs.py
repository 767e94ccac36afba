"""Where the serving process logs: ``var/logs/serving.log`` and stderr.

gunicorn configures only its own loggers, so without this the app's warnings and errors (store
read failures, model load failures) had no handler and went nowhere, most of all under
``--daemon``, where stderr is /dev/null. ``serving/wsgi.py`` calls :func:`setup` before it builds
the app.
"""

from __future__ import annotations

import logging
import sys
from logging.handlers import WatchedFileHandler
from pathlib import Path

from blink.config import Config

LOGGERS = ("serving", "blink", "contracts")
FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
_MARK = "_blink_handler"


def setup(cfg: Config, level: int = logging.INFO) -> Path:
    """Give Blink's loggers a file and a stderr handler, once per process; return the file."""
    path = cfg.layout.logs / "serving.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter(FORMAT)
    # WatchedFileHandler reopens the file after logrotate moves it; every worker appends to it.
    handlers: list[logging.Handler] = [WatchedFileHandler(path), logging.StreamHandler(sys.stderr)]
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _MARK, True)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _MARK, False)]:
            logger.removeHandler(old)
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False  # gunicorn's handlers sit on its own loggers: no double lines
    return path
