"""Which process a pid file names: Blink stops only processes of its own var/ directory.

A pid file copied with a var/ directory (or left behind after a reboot, the pid reused)
names a process that is not this instance's. Before signalling, ``blink stop`` checks the
process itself through /proc (Linux): its working directory must be this var/ directory
(redis-server works in var/redis, gunicorn in var/).
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie waiting for its parent counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but another user's: certainly not ours to stop
        return True
    try:
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def cwd(pid: int) -> Path | None:
    """The process's working directory, or None when it cannot be read (gone, another user)."""
    try:
        return Path(os.readlink(PROC / str(pid) / "cwd")).resolve()
    except OSError:
        return None


def cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def can_verify() -> bool:
    """Process identity is read from /proc; elsewhere Blink refuses to signal by pid file alone."""
    return (PROC / "self" / "cwd").exists()
