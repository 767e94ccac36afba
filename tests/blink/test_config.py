import logging
import re
from pathlib import Path

import pytest

from blink import config
from blink.errors import ConfigError


def test_defaults_then_yaml_then_env(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("serving:\n  port: 9000\n  max_k: 50\n")
    (tmp_path / "prod.yaml").write_text("serving:\n  port: 9100\n")
    cfg = config.load("prod", {"BLINK_CONF_DIR": str(tmp_path), "BLINK_SERVING__MAX_K": "70"})
    assert cfg.serving.port == 9100  # env yaml beats base
    assert cfg.serving.max_k == 70  # env var beats yaml
    assert cfg.serving.default_k == 20  # untouched default
    assert cfg.env == "prod"


def test_unknown_key_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("serving:\n  prot: 9000\n")
    with pytest.raises(ConfigError, match=r"serving\.prot"):
        config.load("dev", {"BLINK_CONF_DIR": str(tmp_path)})


def test_unknown_env_key_names_the_variable(tmp_path: Path) -> None:
    for value in ("3", "[unclosed"):  # not valid YAML either: still the config error, no traceback
        with pytest.raises(ConfigError, match="BLINK_RANKER__DEPTH"):
            config.load("dev", {"BLINK_CONF_DIR": str(tmp_path), "BLINK_RANKER__DEPTH": value})


def test_bad_value_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"head\.user_fraction"):
        config.load("dev", {"BLINK_CONF_DIR": str(tmp_path), "BLINK_HEAD__USER_FRACTION": "1.5"})


def test_redis_url_env_overrides(tmp_path: Path) -> None:
    cfg = config.load("dev", {"BLINK_CONF_DIR": str(tmp_path), "REDIS_URL": "redis://10.0.0.1:7000/1"})
    assert cfg.redis.url == "redis://10.0.0.1:7000/1"


def test_secret_is_not_printed(tmp_path: Path) -> None:
    cfg = config.load("dev", {"BLINK_CONF_DIR": str(tmp_path), "BLINK_REDIS__PASSWORD": "hunter2"})
    assert "hunter2" not in repr(cfg)
    assert cfg.redis.password is not None and cfg.redis.password.get_secret_value() == "hunter2"


def test_repo_conf_files_are_valid() -> None:
    for env in ("dev", "test", "bench", "retail", "movielens", "prod"):
        config.load(env, {})


@pytest.mark.parametrize("value", ["#s3cret", "null", "~", "s3cret #x", "NULL", "true", "123", "[a]", "'q'"])
def test_secrets_and_text_from_the_environment_are_literal(tmp_path: Path, value: str) -> None:
    """YAML would read '#s3cret', 'null' and '~' as None (auth silently off) and cut ' #x'."""
    cfg = config.load("dev", {"BLINK_CONF_DIR": str(tmp_path), "BLINK_SERVING__INGEST_TOKEN": value,
                              "BLINK_REDIS__PASSWORD": value, "BLINK_REDIS__KEY_PREFIX": "p",
                              "BLINK_SERVING__HOST": value})
    assert cfg.serving.ingest_token is not None and cfg.serving.ingest_token.get_secret_value() == value
    assert cfg.redis.password is not None and cfg.redis.password.get_secret_value() == value
    assert cfg.serving.host == value


def test_an_empty_secret_is_an_error_not_auth_off(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BLINK_SERVING__INGEST_TOKEN is set but empty"):
        config.load("dev", {"BLINK_CONF_DIR": str(tmp_path), "BLINK_SERVING__INGEST_TOKEN": ""})


def test_typed_fields_from_the_environment_are_still_parsed(tmp_path: Path) -> None:
    cfg = config.load("dev", {"BLINK_CONF_DIR": str(tmp_path), "BLINK_SERVING__ACCESS_LOG": "true",
                              "BLINK_EVAL__NEW_CLICKS": "[2, 4]", "BLINK_RANKER__MIN_GAIN": "0.5",
                              "BLINK_REDIS__URL": ""})
    assert cfg.serving.access_log is True and cfg.eval.new_clicks == [2, 4] and cfg.ranker.min_gain == 0.5
    assert cfg.redis.url is None  # empty = unset, for a non-secret


def test_secrets_in_conf_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("serving:\n  ingest_token: abc\n")
    with pytest.raises(ConfigError, match="serving.ingest_token is a secret.*BLINK_SERVING__INGEST_TOKEN"):
        config.load("dev", {"BLINK_CONF_DIR": str(tmp_path)})


def test_blink_variables_that_are_not_config_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "blink.config")
    cfg = config.load("dev", {"BLINK_CONF_DIR": str(tmp_path), "BLINK_BIN": "/opt/blink/bin",
                              "BLINK_HOME": "x", "BLINK_SERVNG__PORT": "1", "BLINK_SERVING__PORT": "9001"})
    assert cfg.serving.port == 9001
    messages = {r.getMessage().split(":")[0]: r.levelno for r in caplog.records}
    assert messages["ignoring BLINK_BIN"] == logging.DEBUG
    assert messages["ignoring BLINK_SERVNG__PORT"] == logging.WARNING  # looks like a typo


def test_an_unknown_env_names_the_known_ones(tmp_path: Path) -> None:
    for env in ("test", "prod"):
        (tmp_path / f"{env}.yaml").write_text("{}\n")
    with pytest.raises(ConfigError, match=r"BLINK_ENV='prdo'.*known environments: prod, test"):
        config.load(None, {"BLINK_CONF_DIR": str(tmp_path), "BLINK_ENV": "prdo"})


def test_the_compose_files_env_exists() -> None:
    compose = (config.ROOT / "docker" / "compose.yaml").read_text()
    env = re.search(r"BLINK_ENV: (\w+)", compose)
    assert env is not None
    cfg = config.load(env.group(1), {})
    assert cfg.env == "prod" and cfg.redis.maxmemory_policy == "noeviction"
