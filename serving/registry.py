"""Which model version this process serves, and hot swapping to a newer one.

A background thread polls the store's current-version pointer; a new version is loaded off
the request path and swapped in with one reference assignment (atomic in CPython), so a
request sees either the old pipeline or the new one, never a mix. A version that fails to
load is not served: the old one stays and the error is kept for /health/ready.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from blink import layout
from blink.candidates import SourceSizes
from blink.model import Model
from blink.pipeline import Pipeline
from blink.store import RecStore

log = logging.getLogger(__name__)


class Registry:
    def __init__(self, store: RecStore, artifacts: Path, sizes: SourceSizes) -> None:
        self.store = store
        self.artifacts = artifacts
        self.sizes = sizes  # candidates per source, the same as precompute uses
        self.pipeline: Pipeline | None = None
        self.last_error: str | None = None
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
            self.last_error = f"store unreachable: {exc}"
            return False
        if wanted is None or wanted == self.version:
            return False
        directory = self.artifacts / wanted
        if not (directory / layout.MANIFEST).exists():
            self.last_error = f"version {wanted} has no manifest in {directory}; not serving it"
            log.error(self.last_error)
            return False
        try:
            pipeline = Pipeline(Model.load(directory, "serve"), sizes=self.sizes)
        except Exception as exc:  # noqa: BLE001 - a broken artifact must not replace a good one
            self.last_error = f"version {wanted} failed to load: {exc}"
            log.exception("model load failed")
            return False
        self.pipeline = pipeline  # the atomic swap
        self.last_error = None
        log.info("serving model version %s", wanted)
        return True

    def start(self, every_s: float) -> None:
        self.refresh()

        def loop() -> None:
            while not self._stop.wait(every_s):
                self.refresh()

        threading.Thread(target=loop, name="model-reload", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
