"""gunicorn settings for Blink. Host, port and workers come from Blink's config (`blink serve`)."""

import os

bind = f"{os.environ.get('BLINK_SERVING__HOST', '127.0.0.1')}:{os.environ.get('BLINK_SERVING__PORT', '8080')}"
workers = int(os.environ.get("BLINK_SERVING__WORKERS", "2"))
worker_class = "sync"
# Each worker loads the model itself (after fork), so the reload thread lives in the worker.
preload_app = False
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = "-" if os.environ.get("BLINK_ACCESS_LOG") else None
errorlog = "-"
loglevel = "info"
