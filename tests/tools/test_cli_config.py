"""The configuration rules as a user meets them, through the real `blink` command."""

from __future__ import annotations

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
