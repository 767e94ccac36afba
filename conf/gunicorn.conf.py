"""gunicorn settings for Blink: bind address and workers come from Blink's typed config
(conf/*.yaml and BLINK_SERVING__* variables), so gunicorn run by hand and `blink serve` agree."""

# Only underscore names besides settings and server hooks: gunicorn reads every module-level
# name as a setting (a plain `config` would clash with its own `config` setting).
import os as _os

from blink.config import ROOT as _ROOT
from blink.config import load as _load

_cfg = _load()
_cfg.var.mkdir(parents=True, exist_ok=True)

# prometheus-client multiprocess mode (serving/metrics.py): every worker writes its samples
# here, /metrics aggregates them. Set before any worker imports prometheus_client.
_metrics_dir = _cfg.var / "prometheus"
_os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

bind = f"{_cfg.serving.host}:{_cfg.serving.port}"
workers = _cfg.serving.workers
# gthread, not sync: a sync worker is held by one client for as long as that client takes to
# send its request, so two clients dripping a byte every few seconds starve two sync workers
# (slowloris). gthread waits for a connection's first bytes in its poller (5 s per thread, then
# back to the poller) and gives each worker `threads` request threads, so a few slow clients hold
# a few threads and /health/live still answers. A buffering proxy in front (nginx, see
# docker/compose.yaml) is the answer to many slow clients.
worker_class = "gthread"
threads = _cfg.serving.threads
# Each worker loads the model itself (after fork), so the reload thread lives in the worker.
preload_app = False
timeout = 30
graceful_timeout = 10
keepalive = 5
# Blink does not use gunicornc. The default control socket ($XDG_RUNTIME_DIR/gunicorn.ctl or
# ~/.gunicorn/gunicorn.ctl) is one path per user, so a second Blink on the host would take it
# over from the first: none at all.
control_socket_disable = True
# The server works in its var/ directory: `blink stop` knows this instance's gunicorn by its
# working directory (a pid file alone may be a copy, or a pid reused after a reboot).
chdir = str(_cfg.var)
pythonpath = str(_ROOT)
accesslog = "-" if _cfg.serving.access_log else None
errorlog = "-"
loglevel = "info"


def on_starting(server: object) -> None:
    """Files the server writes (dead letters, logs) are owner-only. --daemon resets the umask to
    022 after forking, so it is set here, in the master, before any worker is forked."""
    _os.umask(0o077)
    # Samples of a previous server's workers would be summed into this one's.
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in _metrics_dir.glob("*.db"):
        stale.unlink()


def child_exit(server: object, worker: object) -> None:
    """A worker's live gauges leave the aggregate with it (its counters and histograms stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
