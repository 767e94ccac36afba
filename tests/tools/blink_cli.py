"""Run the real ``blink`` command in a clean environment pointed at one var/ directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def env_for(var: Path, **extra: str) -> dict[str, str]:
    """The parent's environment minus every Blink/Redis setting, plus a var dir and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINK_") and k != "REDIS_URL"}
    return env | {"BLINK_ENV": "test", "BLINK_PATHS__VAR_DIR": str(var), "PATH": f"{BIN}:{env.get('PATH', '')}"} \
        | extra


def blink(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # a permissive umask in the caller, so owner-only files prove Blink set its own
    return subprocess.run([str(BIN / "blink"), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          umask=0o022)
