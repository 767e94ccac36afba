"""Which model version this process serves, and hot swapping to a newer one.

A background thread polls the store's current-version pointer; a new version is loaded off
the request path and swapped in with one reference assignment (atomic in CPython), so a
request sees either the old pipeline or the new one, never a mix. A version that fails to
load is not served: the old one stays and the error is kept for /health/ready.

Never an empty answer for want of a model: when this process has no version yet and the
store cannot name one (Redis down at start, nothing published) or the named one does not
load (a corrupt artifact), it serves the newest version on local disk that loads and passes
its manifest's checksums, and says so in /health/ready (``source: disk``); when none loads, it
still has the trending list of the newest version whose meta.json reads (``trending``), so
the fallback is not empty. It moves to the store's version as soon as that one loads. A
version that failed is not retried until its manifest changes, so a corrupt artifact costs
one load attempt, not one per poll.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from blink import layout
from blink.candidates import SourceSizes
from blink.errors import SetupError
from blink.files import sha256
from blink.model import Model
from blink.pipeline import Pipeline
from blink.store import RecStore, Scored
from serving import metrics

log = logging.getLogger(__name__)
MAX_DISK_CANDIDATES = 5  # newest version directories tried, so a bad disk cannot stall a start


class Registry:
    def __init__(self, store: RecStore, artifacts: Path, sizes: SourceSizes) -> None:
        self.store = store
        self.artifacts = artifacts
        self.sizes = sizes  # candidates per source, the same as precompute uses
        self.pipeline: Pipeline | None = None
        self.last_error: str | None = None
        self.source: str | None = None  # "store": the published version; "disk": the newest loadable one
        # With no version loadable at all: (version, its trending list) read from disk, for the fallback.
        self.trending: tuple[str, Scored] | None = None
        self._failed: dict[str, tuple[float, str]] = {}  # version -> (manifest mtime, why) when it failed
        self._stop = threading.Event()

    @property
    def version(self) -> str | None:
        pipe = self.pipeline
        return pipe.model.version if pipe else None

    def refresh(self) -> bool:
        """Load the store's current version if it is new; True if a swap happened."""
        try:
            wanted = self.store.current_version()
        except Exception as exc:  # noqa: BLE001 - any store failure must not kill serving
            return self._without_store(f"store unreachable: {exc}")
        if wanted is None:
            return self._without_store("no model version published yet: run `blink run-dag`")
        if wanted == self.version:
            if self.source != "store":
                log.info("version %s is now the published one", wanted)
                self.source, self.last_error = "store", None
            return False
        problem = self._swap(wanted, "store")
        if problem is None:
            return True
        self.last_error = problem
        return self._without_store(problem) if self.pipeline is None else False

    def _without_store(self, why: str) -> bool:
        """Keep what is served; with nothing served, the newest loadable version on disk."""
        self.last_error = why
        if self.pipeline is not None:
            return False
        for version in self._on_disk()[:MAX_DISK_CANDIDATES]:
            if self._swap(version, "disk") is None:
                self.last_error = f"{why}; serving {version}, the newest loadable version on local disk"
                log.warning(self.last_error)
                return True
        self.trending = self._trending_on_disk()
        if self.trending is not None:
            self.last_error = f"{why}; no version on local disk loads, answering trending of {self.trending[0]}"
        log.error("%s; no loadable version on local disk in %s", why, self.artifacts)
        return False

    def _trending_on_disk(self) -> tuple[str, Scored] | None:
        """The trending list of the newest version whose serve-time meta.json reads."""
        for version in self._on_disk(include_failed=True):
            try:
                meta = json.loads((layout.features_dir(self.artifacts / version, "serve") / "meta.json").read_text())
                return version, [(str(i), float(score)) for i, score in meta["trending"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("version %s has no readable trending list: %s", version, exc)
        return None

    def _on_disk(self, include_failed: bool = False) -> list[str]:
        """Complete version directories (with a manifest), newest published first; without the
        ones that failed to load (unless changed since) when not ``include_failed``."""
        found = []
        for manifest in self.artifacts.glob(f"*/{layout.MANIFEST}"):
            try:
                published = float(json.loads(manifest.read_text()).get("published_at_ms", 0))
            except (OSError, ValueError):
                published = 0.0  # unreadable: tried last, and its load will say why
            found.append((published, manifest.parent.name))
        return [v for _, v in sorted(found, reverse=True)
                if include_failed or v not in self._failed or self._changed(v)]

    def _changed(self, version: str) -> bool:
        manifest = self.artifacts / version / layout.MANIFEST
        return manifest.exists() and manifest.stat().st_mtime != self._failed[version][0]

    def _swap(self, version: str, source: str) -> str | None:
        """Load ``version`` and serve it; the problem when it cannot be served (None = swapped)."""
        directory = self.artifacts / version
        manifest = directory / layout.MANIFEST
        if not manifest.exists():
            problem = f"version {version} has no manifest in {directory}; not serving it"
            log.error(problem)
            return problem
        if version in self._failed and not self._changed(version):
            return self._failed[version][1]  # not retried until its manifest changes
        try:
            verify(directory)
            pipeline = Pipeline(Model.load(directory, "serve"), sizes=self.sizes)
        except Exception as exc:  # noqa: BLE001 - a broken artifact must not replace a good one
            problem = f"version {version} failed to load: {exc}"
            self._failed[version] = (manifest.stat().st_mtime, problem)
            log.exception("model version %s failed to load", version)
            return problem
        previous = self.pipeline.model.version if self.pipeline is not None else None
        self.pipeline = pipeline  # the atomic swap
        metrics.served(version, pipeline.model.as_of_ms, previous)
        self.source, self.last_error, self.trending = source, None, None
        log.info("serving model version %s (from %s)", version, source)
        return None

    def status(self) -> dict[str, object]:
        """For /health/ready: the version served, where it came from, and what went wrong."""
        return {"model_version": self.version, "source": self.source, "problem": self.last_error}

    def start(self, every_s: float) -> None:
        self.refresh()

        def loop() -> None:
            while not self._stop.wait(every_s):
                self.refresh()

        threading.Thread(target=loop, name="model-reload", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def verify(directory: Path) -> None:
    """``SetupError`` unless every file the manifest lists under ``checksums`` has its sha256.

    A manifest without checksums (versions published before they were recorded) passes; the
    load itself is then the only check.
    """
    listed: dict[str, str] = json.loads((directory / layout.MANIFEST).read_text()).get("checksums", {})
    for name, expected in listed.items():
        path = directory / name
        if not path.is_file():
            raise SetupError(f"{path} is listed in the manifest but missing")
        if sha256(path) != expected:
            raise SetupError(f"{path} does not match its manifest checksum (corrupt or changed after publish)")
