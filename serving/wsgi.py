"""gunicorn entry point: ``gunicorn -c conf/gunicorn.conf.py serving.wsgi:app``.

Blink's loggers write where gunicorn's error log goes (stderr, or ``var/logs/gunicorn.log``
under ``blink serve --daemon``): store failures, model loads and breaker transitions are
otherwise lost, because nothing else gives those loggers a handler in a worker.
"""

import logging

from serving.app import create_app


def _log_to_gunicorn() -> None:
    errors = logging.getLogger("gunicorn.error")
    if not errors.handlers:  # not under gunicorn (a test, `blink recommend`): leave logging alone
        return
    for name in ("serving", "blink", "contracts"):
        logger = logging.getLogger(name)
        logger.handlers = list(errors.handlers)
        logger.setLevel(logging.INFO)
        logger.propagate = False


_log_to_gunicorn()
app = create_app()
