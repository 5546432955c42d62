"""Training card facts: file hashes, hardware, git commit. The card says what produced a bundle."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from llmner.doc import Document


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe_files(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """[{path, bytes, sha256}] for each existing file, sorted by path."""
    out = []
    for p in sorted({Path(p) for p in paths}):
        if p.is_file():
            out.append({"path": str(p), "bytes": p.stat().st_size, "sha256": file_sha256(p)})
    return out


def documents_sha256(docs: Iterable[Document]) -> str:
    """A content hash of documents as read (text + entities): identifies the data even without files."""
    h = hashlib.sha256()
    for doc in docs:
        h.update(orjson.dumps(doc.to_dict(), option=orjson.OPT_SORT_KEYS))
        h.update(b"\n")
    return h.hexdigest()


def corpus_source_files(name: str, split: str) -> list[dict[str, Any]]:
    """The files a corpus split was read from, with hashes, when the corpus registry can tell."""
    try:
        from llmner.data_processing import corpora
    except ImportError:
        return []
    finder = getattr(corpora, "corpus_files", None)
    if finder is None:
        return []
    try:
        return describe_files(finder(name, split))
    except Exception:  # noqa: BLE001 - the card must never break a finished training run
        return []


def hardware() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import peft
        import transformers

        info["transformers"] = transformers.__version__
        info["peft"] = peft.__version__
    except ImportError:
        pass
    return info


def git_commit(start: str | Path | None = None) -> str | None:
    """HEAD of the git checkout holding llmner (None outside a checkout or without git)."""
    where = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                           capture_output=True, text=True, timeout=5)
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
