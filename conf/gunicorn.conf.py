"""gunicorn settings for Blink: bind address and workers come from Blink's typed config
(conf/*.yaml and BLINK_SERVING__* variables), so gunicorn run by hand and `blink serve` agree."""

# Only underscore names besides settings: gunicorn reads every module-level name as a setting
# (a plain `config` would clash with its own `config` setting).
from blink.config import load as _load

_cfg = _load()

bind = f"{_cfg.serving.host}:{_cfg.serving.port}"
workers = _cfg.serving.workers
worker_class = "sync"
# Each worker loads the model itself (after fork), so the reload thread lives in the worker.
preload_app = False
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = "-" if _cfg.serving.access_log else None
errorlog = "-"
loglevel = "info"
