"""One typed configuration: defaults -> conf/base.yaml -> conf/<BLINK_ENV>.yaml -> BLINK_* env.

Environment variables use a double underscore between section and key, e.g.
``BLINK_SERVING__PORT=9000``; text fields (tokens, passwords, paths) take the value literally,
other fields parse it as YAML. ``REDIS_URL`` overrides ``redis.url`` (the usual convention).
Unknown keys and bad values fail at load time with a message naming the key; ``BLINK_*`` names
that are not ``BLINK_<SECTION>__<KEY>`` are not config and are ignored; secrets are refused in
conf files; an unknown ``BLINK_ENV`` fails naming the known ones.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from blink.errors import ConfigError
from blink.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
ENV_PREFIX = "BLINK_"
DEFAULT_ENV = "dev"
log = logging.getLogger(__name__)


class Section(BaseModel):
    """A config section: unknown keys are an error, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class RedisConfig(Section):
    url: str | None = Field(None, description="Use this server; unset = start our own")
    password: SecretStr | None = Field(None, description="Only from the environment")
    tls: bool = False
    key_prefix: str = Field("blink", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    socket_timeout_ms: int = Field(50, ge=1, le=10_000)
    # Blink's own redis-server only (a server given by redis.url is configured by its operator).
    maxmemory: str = Field("1gb", pattern=r"^[0-9]+(b|kb|mb|gb)?$", description="memory bound of Blink's "
                           "own redis-server (redis.conf syntax); writes past it are refused, never evicted")
    # noeviction: the event stream, the exactly-once markers and the current-version pointer must
    # never be evicted; a full Redis refuses writes (POST /v1/events answers 503, nothing taken).
    # volatile-lru evicts only keys with a TTL (session states, seen-markers) before refusing.
    maxmemory_policy: Literal["noeviction", "volatile-lru", "volatile-ttl"] = "noeviction"


class PathsConfig(Section):
    var_dir: Path = Path("var")

    def resolved(self) -> Path:
        return self.var_dir if self.var_dir.is_absolute() else ROOT / self.var_dir


class DataConfig(Section):
    size: Literal["tiny", "demo", "bench"] = "demo"
    seed: int = 7


class SparkConfig(Section):
    master: str = "local[*]"
    shuffle_partitions: int = Field(4, ge=1)
    driver_memory: str = "4g"
    driver_host: str | None = Field(None, description="address the Spark driver listens on; "
                                    "unset = 127.0.0.1 for a local master (required for a cluster master)")


class SplitConfig(Section):
    """Temporal split: [.. train_end) trains embeddings; then label hours; then test hours."""

    label_hours: int = Field(72, ge=1)
    test_hours: int = Field(72, ge=1)


class EmbeddingsConfig(Section):
    """ALS (implicit, CPU). The grid_* lists are tried on a validation cut; empty = the single value."""

    dim: int = Field(32, ge=2, le=512, description="factors when grid_factors is empty")
    iterations: int = Field(15, ge=1)
    reg: float = Field(0.1, gt=0, description="regularization when grid_regularization is empty")
    alpha: float = Field(1.0, gt=0, description="confidence scale when grid_alpha is empty")
    grid_factors: list[int] = Field(default_factory=lambda: [32, 64])
    grid_regularization: list[float] = Field(default_factory=lambda: [0.1, 1.0])
    grid_alpha: list[float] = Field(default_factory=lambda: [1.0, 5.0, 20.0])
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 5.0, "rating": 3.0},
        description="implicit confidence per event type (a rating with a value weighs its value)")
    min_rating: float | None = Field(3.5, description="tried as a threshold: ratings below it do not count")
    tune_weighting: bool = Field(True, description="also try binary weights and the rating threshold")
    threads: int = Field(2, ge=1, description="ALS threads")


class RetrievalConfig(Section):
    candidates: int = Field(500, ge=10, le=5000)
    brute_force_below: int = Field(2000, ge=0, description="items; exact search under this")
    num_leaves: int = Field(0, ge=0, description="0 = sqrt(items)")
    leaves_to_search: int = Field(0, ge=0, description="0 = 10% of leaves")
    reorder: int = Field(1000, ge=0)
    tune: bool = Field(True, description="choose ScaNN settings by measuring recall@candidates vs exact search")
    target_recall: float = Field(0.95, gt=0, le=1, description="recall@candidates the tuned index must reach")
    tune_queries: int = Field(300, ge=10, description="sample queries for the tuning measurement")
    quantize: bool = Field(True, description="measure int8 and bfloat16 scoring next to float32; publish one "
                                             "only within max_quantization_loss")
    max_quantization_loss: float = Field(0.005, ge=0, le=1, description="relative recall loss allowed "
                                                                       "(at 20 and at candidates)")


class RankerConfig(Section):
    objective: Literal["rank:ndcg", "rank:pairwise", "rank:map"] = "rank:ndcg"
    n_estimators: int = Field(150, ge=1)
    max_depth: int = Field(6, ge=1)
    learning_rate: float = Field(0.1, gt=0)
    min_child_weight: float = Field(1.0, ge=0, description="larger: fewer, steadier splits on small data")
    min_gain: float = Field(0.0, ge=0, description="NDCG@20 the ranker must add over the fused source "
                                                   "order on held-out groups to be served")
    train_candidates: int = Field(200, ge=10, description="per training user")
    max_train_users: int = Field(4000, ge=10)
    max_train_sessions: int = Field(3000, ge=0, description="session groups (anonymous prefix -> next items)")


class HeadConfig(Section):
    user_fraction: float = Field(0.2, gt=0, le=1)
    item_fraction: float = Field(0.2, gt=0, le=1, description="most popular items get precomputed similar lists")
    list_length: int = Field(100, ge=1, le=1000)


class PrecomputeConfig(Section):
    """How the head users' lists are computed (jobs/precompute.py)."""

    batch_users: int = Field(256, ge=1, le=10_000, description="users whose candidates share one ranker call")
    max_age_hours: float = Field(6.0, ge=0, description="an hourly run reuses the previous version's list of a "
                                                         "head user with no new events and the same vector "
                                                         "until it is this old; 0: recompute every list")


class ServingConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(2, ge=1)
    threads: int = Field(8, ge=1, le=64, description="request threads per gunicorn worker (gthread); "
                                                     "a slow client holds one")
    default_k: int = Field(20, ge=1)
    max_k: int = Field(100, ge=1)
    deadline_ms: float = Field(150.0, gt=0)
    reload_seconds: float = Field(5.0, gt=0)
    access_log: bool = False
    max_batch: int = Field(1000, ge=1, le=100_000, description="events per POST /v1/events")
    ingest_token: SecretStr | None = Field(None, description="Bearer token for POST /v1/events; env only")
    # What POST /v1/events may write to the dead-letter queue (per gunicorn worker); see README "Resilience".
    dlq_letter_bytes: int = Field(16_384, ge=256, description="a dead letter's payload is cut to this")
    dlq_request_bytes: int = Field(524_288, ge=1024, description="letters per request; more: 413")
    dlq_minute_bytes: int = Field(8_388_608, ge=1024, description="letters per minute; more: 429")
    dlq_minute_records: int = Field(10_000, ge=1, description="letters per minute; more: 429")
    stream_max_events: int = Field(1_000_000, ge=0, description="events waiting for ingest in the Redis "
                                   "stream; more: 503, never trimmed (0 = no cap)")


# The baselines jobs/head_to_head.py can fit (config names them, so a typo is a clear error).
BaselineName = Literal["popularity_all", "popularity_recent", "als_tuned", "ease", "item_knn", "covisitation",
                       "session_knn"]
BASELINES: tuple[BaselineName, ...] = get_args(BaselineName)


class EvalConfig(Section):
    k: int = Field(20, ge=1)
    tolerance: float = Field(0.02, ge=0, description="relative; worse than current by more = no publish")
    max_users: int = Field(3000, ge=10, description="users scored per question set (sampled above this)")
    baselines: list[BaselineName] = Field(list(BASELINES), description="baselines Blink is compared with")
    baseline_tolerance: float = Field(0.05, ge=0, le=1, description="relative; Blink below the best baseline's "
                                      "known-user NDCG by more fails the baseline gate")
    # warn until Blink beats its baselines on the data you run it on (README: measured quality);
    # block then, so a regression below a simple baseline is never published.
    baseline_gate: Literal["block", "warn"] = Field("warn", description="what a failed baseline gate does")
    popular_days: float = Field(30, gt=0, description="window of the recent-popularity baseline")
    ease_lambda: float = Field(500, gt=0, description="EASE's L2 regularisation")
    ease_max_items: int = Field(30_000, ge=1, description="EASE is skipped above this many items (dense inverse)")
    new_clicks: list[int] = Field([1, 3, 5], description="new users are asked after this many clicks")


class SessionConfig(Section):
    hidden: int = Field(64, ge=4, le=1024, description="GRU hidden size")
    epochs: int = Field(8, ge=1)
    ttl_s: int = Field(1800, ge=60, description="a session's state expires after this idle time")
    blend: float = Field(0.6, ge=0, le=1, description="weight of the session vector for a known user")


class QualityConfig(Section):
    window_hours: int = Field(24, ge=1, description="newest hours of events each run validates")


class CandidatesConfig(Section):
    """The candidate sources besides the ANN neighbours (retrieval.candidates), and co-visitation."""

    covisit_candidates: int = Field(100, ge=0, le=5000, description="co-visited items per request")
    popular_candidates: int = Field(50, ge=0, le=5000, description="trending items per request")
    sknn_candidates: int = Field(100, ge=0, le=5000, description="items of the most similar users' histories")
    sknn_neighbours: int = Field(100, ge=1, le=5000, description="similar users (session-kNN) per request")
    covisit_window: int = Field(5, ge=1, le=50, description="events after an item that count as co-visits")
    covisit_max_gap_hours: float = Field(24.0, gt=0, description="co-visits further apart do not count")
    covisit_top_n: int = Field(50, ge=1, le=1000, description="co-visited items kept per item")


class Config(Section):
    """The whole configuration. Build it with :func:`load`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    env: str = "dev"
    redis: RedisConfig = RedisConfig()
    paths: PathsConfig = PathsConfig()
    data: DataConfig = DataConfig()
    spark: SparkConfig = SparkConfig()
    split: SplitConfig = SplitConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    ranker: RankerConfig = RankerConfig()
    head: HeadConfig = HeadConfig()
    precompute: PrecomputeConfig = PrecomputeConfig()
    serving: ServingConfig = ServingConfig()
    eval: EvalConfig = EvalConfig()
    quality: QualityConfig = QualityConfig()
    session: SessionConfig = SessionConfig()
    candidates: CandidatesConfig = CandidatesConfig()

    @property
    def var(self) -> Path:
        return self.paths.resolved()

    @property
    def layout(self) -> Layout:
        """The directories under ``var/`` (see blink/layout.py)."""
        return Layout(self.var)


SECTIONS = tuple(name for name, info in Config.model_fields.items()
                 if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of sections, got {type(data).__name__}")
    return data


def _takes_text(annotation: Any) -> bool:
    """True for fields whose value is text (str, SecretStr, Path, a str Literal), optional or not."""
    args = get_args(annotation)
    if get_origin(annotation) is Literal:
        return all(isinstance(a, str) for a in args)
    if args and get_origin(annotation) in (Union, UnionType):
        return any(_takes_text(a) for a in args if a is not type(None))
    return annotation in (str, SecretStr, Path)


def _env_value(section: str, key: str, raw: str, name: str) -> Any:
    """One variable's value. Text fields take it literally: ``#s3cret``, ``null``, ``~`` and
    ``s3cret #x`` stay what they say (YAML would read them as None or cut the comment, and a
    token read as None turns auth off). Numbers, booleans and lists are parsed as YAML."""
    field = Config.model_fields[section].annotation
    info = field.model_fields.get(key) if isinstance(field, type) and issubclass(field, BaseModel) else None
    if info is None:  # unknown key: validation refuses it, naming the variable
        return raw
    if info.annotation is not None and _takes_text(info.annotation):
        if raw == "" and _is_secret(info.annotation):
            raise ConfigError(f"{name} is set but empty: give the secret a value, or unset the variable")
        return raw if raw != "" else None
    if raw == "":
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # validation names the variable and the expected type


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    """BLINK_<SECTION>__<KEY>=value -> {section: {key: value}}.

    Only that pattern with a known section is configuration: other ``BLINK_*`` names (a
    wrapper's ``BLINK_BIN``, say) are not Blink's and are ignored, with a debug line (a warning
    when it looks like a mistyped section). An unknown key in a known section is an error.
    """
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ("BLINK_ENV", "BLINK_CONF_DIR"):
            continue
        section, sep, key = name[len(ENV_PREFIX):].lower().partition("__")
        if not sep or section not in SECTIONS or not key:
            level = logging.WARNING if sep else logging.DEBUG
            log.log(level, "ignoring %s: not a BLINK_<SECTION>__<KEY> config variable (sections: %s)",
                    name, ", ".join(SECTIONS))
            continue
        out.setdefault(section, {})[key] = _env_value(section, key, raw, name)
    if environ.get("REDIS_URL"):
        out.setdefault("redis", {})["url"] = environ["REDIS_URL"]
    return out


def _secrets_in(layer: dict[str, Any]) -> list[str]:
    """Keys of secret fields set in a YAML layer (secrets come only from the environment)."""
    found = []
    for section, values in layer.items():
        field = Config.model_fields.get(section)
        model = field.annotation if field else None
        if not isinstance(values, dict) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        found += [f"{section}.{key}" for key, info in model.model_fields.items()
                  if key in values and values[key] is not None and _is_secret(info.annotation)]
    return found


def _env_file(conf_dir: Path, env: str) -> Path | None:
    """conf/<env>.yaml; an unknown env is an error naming the known ones (the default may have none)."""
    path = conf_dir / f"{env}.yaml"
    if path.exists():
        return path
    if env == DEFAULT_ENV:
        return None
    known = sorted(p.stem for p in conf_dir.glob("*.yaml") if p.stem != "base")
    raise ConfigError(f"BLINK_ENV={env!r}: there is no {path}; known environments: "
                      f"{', '.join(known) or '(none)'} (or add {path.name})")


def load(env: str | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load the layered config; raise ConfigError naming the first bad key."""
    environ = dict(os.environ if environ is None else environ)
    env = env or environ.get("BLINK_ENV") or DEFAULT_ENV
    conf_dir = Path(environ.get("BLINK_CONF_DIR", ROOT / "conf"))
    env_file = _env_file(conf_dir, env)
    files = [conf_dir / "base.yaml"] + ([env_file] if env_file else [])
    layers = [_read_yaml(path) for path in files]
    for path, layer in zip(files, layers, strict=True):
        if secrets := _secrets_in(layer):
            raise ConfigError(f"{path}: {', '.join(secrets)} is a secret: set it in the environment "
                              f"({', '.join(ENV_PREFIX + s.upper().replace('.', '__') for s in secrets)}), "
                              "never in a conf file")
    layers.append(_from_env(environ))
    merged: dict[str, Any] = {"env": env}
    for layer in layers:
        merged = _merge(merged, layer)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            env_name = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
            problems.append(f"config key '{key}' (or {env_name}): {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
