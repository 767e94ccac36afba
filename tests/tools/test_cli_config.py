"""The configuration rules as a user meets them, through the real `blink` command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tools.blink_cli import blink, env_for

pytestmark = pytest.mark.integration


def test_a_wrappers_blink_variables_do_not_break_commands(tmp_path: Path) -> None:
    done = blink("stop", env=env_for(tmp_path / "var", BLINK_BIN="/opt/blink/bin", BLINK_HOME="/opt/blink"))
    assert done.returncode == 0, done.stderr
    assert "no Blink redis-server running" in done.stderr


def test_an_unknown_env_names_the_known_ones(tmp_path: Path) -> None:
    done = blink("stop", env=env_for(tmp_path / "var", BLINK_ENV="prdo"))
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert "BLINK_ENV='prdo'" in message and "prod" in message and "movielens" in message, message


def test_an_empty_token_is_refused_not_auth_off(tmp_path: Path) -> None:
    done = blink("stop", env=env_for(tmp_path / "var", BLINK_SERVING__INGEST_TOKEN=""))
    assert done.returncode == 2 and "BLINK_SERVING__INGEST_TOKEN is set but empty" in " ".join(done.stderr.split())


def test_recommend_before_any_run_says_what_to_do_and_starts_nothing(tmp_path: Path) -> None:
    import subprocess
    import sys

    var = tmp_path / "var"
    done = subprocess.run([str(Path(sys.executable).parent / "blink"), "recommend", "u1"], capture_output=True,
                          text=True, env={**os.environ, "BLINK_PATHS__VAR_DIR": str(var)}, timeout=120)
    assert done.returncode == 1 and "run `blink run-dag` first" in done.stderr
    assert not (var / "redis").exists()  # no redis-server was started for it


def test_version_flag() -> None:
    import subprocess
    import sys

    done = subprocess.run([str(Path(sys.executable).parent / "blink"), "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("blink, version ")
