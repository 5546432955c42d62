"""The user cache for derived artefacts (safetensors of the packaged GGUF, merged generator
weights, selector ONNX files): built on first use, reused afterwards, never shipped.

Prebuilt directories (``LLMNER_PREBUILT_DIR``, one or more paths joined by ``os.pathsep``) hold the
same layout, filled ahead of time by ``llmner warm`` (the images do it at build time): they are searched
first and never written. Why: a pod mounts its cache volume empty, so without them every new worker
would convert the base models and export the selector again (minutes of CPU) before taking a task,
just when the autoscaler adds workers because the queue is long.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """``LLMNER_CACHE_DIR``, default ``~/.cache/llmner``."""
    return Path(os.environ.get("LLMNER_CACHE_DIR") or Path.home() / ".cache" / "llmner").expanduser()


def prebuilt_dirs() -> list[Path]:
    """The read-only prebuilt directories named by ``LLMNER_PREBUILT_DIR``, in search order."""
    value = os.environ.get("LLMNER_PREBUILT_DIR", "")
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]


def cached(relative: str | Path, marker: str | None = None) -> Path:
    """Where the artefact at ``relative`` (a path inside the cache layout) is read from: the first
    prebuilt directory holding it, else its place in the cache, where the caller builds it when it is
    missing. A directory counts as held when ``marker`` (a file inside it) exists; a file, when it exists."""
    for root in prebuilt_dirs():
        found = root / relative
        if (found / marker).is_file() if marker else found.is_file():
            return found
    return cache_dir() / relative


def publish_directory(target: Path, build: Callable[[Path], None], marker: str = "config.json") -> Path:
    """Build a directory once and publish it atomically at ``target``.

    ``build`` fills a temporary sibling directory, which is then renamed into place, so readers
    never see a half-written directory. ``target/marker`` existing means already built. When two
    processes race, the loser's rename fails and the winner's copy is used.
    """
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(tmp, 0o755)
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / marker).is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
