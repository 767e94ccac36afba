"""Crash-safe file replacement, shared by the dead-letter queue, the stream drain and ingest;
and the file digest publish records and serving checks."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path


def replace_file(path: Path, lines: Iterable[bytes]) -> None:
    """Atomically make ``path`` hold exactly ``lines`` (tmp file, fsync, rename, fsync dir).

    Readers see the old or the new content, never a mix; the temporary file starts with "."
    and ends in ".tmp", so globs for ``*.jsonl`` never pick it up.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.writelines(lines)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_text(path: Path, text: str) -> None:
    """:func:`replace_file` for one text."""
    replace_file(path, [text.encode("utf-8")])


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (artifacts can be hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
