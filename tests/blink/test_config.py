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
    with pytest.raises(ConfigError, match="BLINK_RANKER__DEPTH"):
        config.load("dev", {"BLINK_CONF_DIR": str(tmp_path), "BLINK_RANKER__DEPTH": "3"})


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
    for env in ("dev", "test", "bench", "retail", "movielens"):
        config.load(env, {})
