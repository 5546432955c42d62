"""What the benchmark reports share: corpus labels, named settings (arms, variants), model
fingerprints and the resumable row cache.

A report row (one system on one corpus subset) takes minutes to hours on a CPU, so each finished row
is stored as JSON under a name that holds the subset and a fingerprint of the models behind it; a
rerun reads it back instead of computing it again, and a changed model gets a new name.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# How the reports name each corpus (CORPUS_NAMES order).
CORPUS_LABELS: dict[str, str] = {
    "ncbi_disease": "NCBI-Disease", "bc5cdr": "BC5CDR", "genia": "GENIA (nested)", "jnlpba": "JNLPBA",
    "bc2gm": "BC2GM", "linnaeus": "LINNAEUS", "s800": "S800", "cmeee": "CMeEE", "btc": "BTC",
}


def files_fingerprint(paths: Sequence[Path], root: Path | None = None) -> str:
    """12 hex digits over the paths and the bytes of those that exist; with ``root``, the paths are
    named relative to it, so that the same files elsewhere (another checkout, another machine) give
    the same fingerprint and a row cache carried in git stays valid."""
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p.relative_to(root) if root is not None else p).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def bundle_fingerprint(bundle: Path) -> str:
    """Changes when the bundle's manifest, generator card/config, selector config, reader or proposers
    (config and weights) change (not when the bundle moves)."""
    from llmner.bundle import MANIFEST_NAME, READER_DIR, BundleManifest
    from llmner.errors import ConfigError

    bundle = bundle.resolve()
    files = [bundle / MANIFEST_NAME, bundle / "generator" / "training_card.json", bundle / "generator" / "generator_config.json",
             bundle / "selector" / "selector_config.json", bundle / "selector" / "training_card.json"]
    try:    # the proposers the manifest names (none where it is not a whole manifest)
        proposers = [e.directory for e in BundleManifest.from_dict(json.loads((bundle / MANIFEST_NAME).read_text())).proposers]
    except (OSError, ValueError, ConfigError):
        proposers = []
    # Named only when present: a bundle without one keeps its fingerprint.
    for part in ([READER_DIR] if (bundle / READER_DIR).is_dir() else []) + proposers:
        files += [bundle / part / "reader_config.json", bundle / part / "reader_head.safetensors"]
    return files_fingerprint(files, root=bundle)


def served_fingerprint(bundle: Path, selector_backend: str) -> str:
    """A row's key for a bundle as served: its fingerprint and, on the ONNX backend, the export recipe
    that turns the selector's weights into the graph that scores (a new recipe scores anew: session 29's
    7-bit weights)."""
    from llmner.runtime.onnx_selector import EXPORT_VERSION

    fingerprint = bundle_fingerprint(bundle)
    return f"{fingerprint}-onnx{EXPORT_VERSION}" if selector_backend == "onnx" else fingerprint


def llmner_system(protocol: str, mode: str, selector_backend: str) -> str:
    """How the quality report names a bundle's rows: its protocol ("a": trained on every corpus, "b":
    zero-shot), decoding mode and selector backend."""
    return f"llmner-{protocol}-{mode}-{selector_backend}"


def row_cache_path(work_dir: Path, system: str, corpus: str, split: str, documents: int, fingerprint: str) -> Path:
    """Where the row of ``system`` on the first ``documents`` documents of ``corpus``/``split`` is kept
    (its predictions in parts beside it, ``.parts``)."""
    return work_dir / "rows" / f"{system}__{corpus}__{split}__d{documents}__{fingerprint}.json"


def cached_row(path: Path) -> dict[str, Any] | None:
    """The row stored at ``path``, or None when there is none (or it was cut off mid-write)."""
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
    return None


def store_row(path: Path, row: dict[str, Any]) -> None:
    """Write ``row`` to ``path`` atomically (a reader never sees half a row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(row, indent=1))
    os.replace(tmp, path)


def named_settings(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:KEY=VALUE,KEY=VALUE`` -> (name, {key: value}), values parsed as YAML: how the ablation and
    throughput benchmarks name an arm. A value may be a YAML flow list (``corpora=[a,b]``): commas inside
    brackets do not separate pairs."""
    import yaml

    name, _, body = text.partition(":")
    pairs, depth, current = [], 0, ""
    for char in body:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            pairs.append(current)
            current = ""
        else:
            current += char
    pairs.append(current)
    settings = {}
    for pair in filter(None, pairs):
        key, _, value = pair.partition("=")
        settings[key.strip()] = yaml.safe_load(value)
    return name, settings
