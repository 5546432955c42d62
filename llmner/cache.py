"""The user cache for derived artefacts (safetensors of the packaged GGUF, merged generator
weights, selector ONNX files): built on first use, reused afterwards, never shipped."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """``LLMNER_CACHE_DIR``, default ``~/.cache/llmner``."""
    return Path(os.environ.get("LLMNER_CACHE_DIR") or Path.home() / ".cache" / "llmner").expanduser()


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
