"""Where everything lives: the ``var/`` directory and the files of one model version.

Every path Blink reads or writes is named here once, so a job, the server and a CLI command
cannot disagree about a file name. ``Layout(cfg.var)`` (or ``cfg.layout``) gives the
directories; the module constants name the artifact files inside a version's directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The files of one model version, in ``var/artifacts/<version>/``.
EMBEDDINGS = "embeddings.npz"  # item and user vectors (ALS)
EMBEDDINGS_TUNING = "embeddings_tuning.json"  # the ALS grid and its choice
RANKER = "ranker.ubj"  # XGBoost LTR model
RANKER_IMPORTANCE = "ranker_importance.json"
FUSION = "fusion.json"  # source weights per request kind, and where the ranker beat them
SESSION_WEIGHTS = "session_gru.npz"  # GRU exported to NumPy (serving never imports torch)
SESSION_EVAL = "session_eval.json"
INDEX_DIR = "scann"  # the ScaNN index
RETRIEVAL_TUNING = "retrieval_tuning.json"
COVISITATION = "covisit.parquet"  # per cut-off, in features/<tag>/: item -> co-visited items
FEATURES_DIR = "features"  # features/<cut-off>/{users,items}.parquet
EVAL = "eval.json"  # offline metrics + the gate's inputs
HEAD_USERS = "head_users.json"
HEAD_LISTS = "head_lists.parquet"
SIMILAR_LISTS = "similar_lists.parquet"
TIMINGS = "task_seconds.json"
MANIFEST = "manifest.json"  # written last by publish: the version is complete
FITTED_FROM = "fitted_from.json"  # an hourly version: which daily version's models it reuses


def user_vectors(version_dir: Path, as_of: str) -> Path:
    """User vectors folded in at one cut-off (``eval`` or ``serve``) against the fixed item vectors."""
    return version_dir / f"users_{as_of}.npz"


def features_dir(version_dir: Path, as_of: str) -> Path:
    """Aggregates of one cut-off (``train``, ``eval`` or ``serve``) inside a version."""
    return version_dir / FEATURES_DIR / as_of


@dataclass(frozen=True)
class Layout:
    """The directories under one ``var/`` root."""

    root: Path

    @property
    def landing(self) -> Path:
        """Files waiting for the next ingest, one folder per table."""
        return self.root / "landing"

    @property
    def lake(self) -> Path:
        """Parquet tables: events (partitioned by date/hour/batch), items, users."""
        return self.root / "lake"

    def table(self, name: str) -> Path:
        return self.lake / name

    @property
    def dlq(self) -> Path:
        return self.root / "dlq"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def version(self, version: str) -> Path:
        return self.artifacts / version

    @property
    def latest_fit(self) -> Path:
        """Names the latest published daily (fitted) version, which hourly runs refresh."""
        return self.artifacts / "LATEST_FIT"

    @property
    def gx(self) -> Path:
        """Great Expectations' own file context."""
        return self.root / "gx"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def data_docs(self) -> Path:
        return self.reports / "data_docs"

    @property
    def eval_reports(self) -> Path:
        return self.reports / "eval"

    @property
    def bench_reports(self) -> Path:
        return self.reports / "bench"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def airflow(self) -> Path:
        return self.root / "airflow"

    @property
    def redis(self) -> Path:
        """Blink's own redis-server: data, AOF, log and the state file with its port."""
        return self.root / "redis"

    @property
    def redis_state(self) -> Path:
        return self.redis / "server.json"

    @property
    def gunicorn_pid(self) -> Path:
        return self.root / "gunicorn.pid"

    @property
    def checkpoints(self) -> Path:
        """Ingest's bookkeeping: which landing files and stream entries are in the lake."""
        return self.lake / "_checkpoints"
