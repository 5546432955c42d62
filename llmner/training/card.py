"""Training card facts: file hashes, hardware, git commit. The card says what produced a generator or selector directory."""

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


def documents_sha256(docs: Iterable[Document]) -> str:
    """A content hash of documents as read (text + entities): identifies the data even without files."""
    h = hashlib.sha256()
    for doc in docs:
        h.update(orjson.dumps(doc.to_dict(), option=orjson.OPT_SORT_KEYS))
        h.update(b"\n")
    return h.hexdigest()


def corpus_source_files(name: str, max_listed: int = 50) -> dict[str, Any]:
    """Hashes of the files a corpus is read from: its whole folder under the data directory.

    ``digest`` is the sha256 of the sorted ``relative path TAB file sha256`` lines, so one value
    identifies the folder; the per-file list is included when it has at most ``max_listed`` files
    (S800 has ~1,600 standoff files). Empty when the corpus is not in the registry.
    """
    try:
        from llmner.data_processing.corpora.registry import corpus_spec, data_dir

        folder = data_dir() / corpus_spec(name).folder
    except Exception:  # noqa: BLE001 - in-memory corpora (tests) have no folder; the card notes that
        return {}
    if not folder.is_dir():
        return {}
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    rows = [{"path": str(p.relative_to(folder)), "bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files]
    digest = hashlib.sha256("".join(f"{r['path']}\t{r['sha256']}\n" for r in rows).encode()).hexdigest()
    out: dict[str, Any] = {"folder": str(folder), "file_count": len(rows), "bytes": sum(r["bytes"] for r in rows),
                           "digest": digest}
    if len(rows) <= max_listed:
        out["files"] = rows
    return out


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
    from importlib.metadata import PackageNotFoundError, version

    for package in ("transformers", "peft"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            pass
    return info


def git_commit(start: str | Path | None = None) -> str | None:
    """HEAD of the git checkout holding llmner (None outside a checkout or without git)."""
    where = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                           capture_output=True, text=True, timeout=5, check=False)
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
