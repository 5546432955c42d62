"""Build ahead of time everything a bundle derives on its first load, so that a new worker starts fast.

A bundle ships small files (a LoRA adapter, selector weights, a reader head, dictionaries); its first
load derives large ones from them and from the packaged models: the base models' safetensors (the
generator's SmolLM2 and the reader's Gemma, dequantized from their GGUF), the selector's ONNX graph, and
the normalizer's name embeddings. :func:`warm_bundle` builds them all into the cache
(``LLMNER_CACHE_DIR``; the embeddings into ``LLMNER_NORMALIZER_EMBEDDINGS``), or reports them present.
An image runs it at build time with ``LLMNER_CACHE_DIR`` set to the directory it then names in
``LLMNER_PREBUILT_DIR`` (``llmner.cache``), which every later load reads first.

>>> for artefact in warm_bundle("llmner/bundles/default"):
...     print(artefact.what, artefact.built, artefact.path)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmner.errors import ConfigError


@dataclass(frozen=True, slots=True)
class WarmedArtefact:
    """One derived artefact: what it is, where it is, whether this call built it (False: it was
    there already) and the seconds the call spent on it."""

    what: str
    path: Path
    built: bool
    seconds: float


def _timed(what: str, exists: Callable[[], bool], build: Callable[[], Path]) -> WarmedArtefact:
    present = exists()
    started = time.perf_counter()
    path = build()
    return WarmedArtefact(what, path, not present, time.perf_counter() - started)


def _base_model(what: str, name: str) -> WarmedArtefact:
    from llmner.modeling.loading import base_model_ready, resolve_base_model

    return _timed(what, lambda: base_model_ready(name), lambda: resolve_base_model(name))


def warm_bundle(bundle: str | Path, onnx_variants: Sequence[str] | None = None) -> list[WarmedArtefact]:
    """Build (or find) every artefact the bundle's first load would derive. ``onnx_variants``: the
    selector graphs to build (default: the one this machine serves, ``int8`` on a CPU and ``fp16``
    with CUDA; a CPU build machine preparing a GPU image names ``fp16``)."""
    from llmner.bundle import (
        GENERATOR_DIR,
        NORMALIZER_DIR,
        READER_DIR,
        SELECTOR_DIR,
        load_manifest,
    )
    from llmner.modeling.generator import CONFIG_NAME as GENERATOR_CONFIG
    from llmner.modeling.reader import CONFIG_NAME as READER_CONFIG
    from llmner.modeling.reader import ReaderConfig

    root = Path(bundle)
    manifest = load_manifest(root)
    out: list[WarmedArtefact] = []
    generator_config = json.loads((root / GENERATOR_DIR / GENERATOR_CONFIG).read_text())
    out.append(_base_model(f"generator base model ({generator_config['base_model']})", generator_config["base_model"]))
    bases = {artefact.what for artefact in out}
    readers = [(READER_DIR, manifest.reader_schemas)] + [(e.directory, e.schemas) for e in manifest.proposers]
    for part, schemas in readers:
        if schemas and (root / part / READER_CONFIG).is_file():
            base = ReaderConfig.from_pretrained(root / part).base_model
            name = f"reader base model ({base})"     # a proposer is a reader too: one Gemma for all
            if name not in bases:
                bases.add(name)
                out.append(_base_model(name, base))
    if manifest.has_selector:
        from llmner.modeling.selector_export import VARIANTS
        from llmner.runtime.onnx_selector import (
            CUDA,
            choose_provider,
            ensure_onnx,
            onnx_file,
        )

        selector_dir = root / SELECTOR_DIR
        variants = list(onnx_variants or ["fp16" if choose_provider() == CUDA else "int8"])
        for variant in variants:
            if variant not in VARIANTS:
                raise ConfigError(f"unknown ONNX variant {variant!r} (expected {', '.join(VARIANTS)})")
            out.append(_timed(f"selector ONNX ({variant})", lambda v=variant: onnx_file(selector_dir, v).is_file(),
                              lambda v=variant: ensure_onnx(selector_dir, v)))
    if (root / NORMALIZER_DIR).is_dir():
        from llmner.normalization import warm_embeddings

        for stored in warm_embeddings(root / NORMALIZER_DIR):
            out.append(WarmedArtefact(f"normalizer embeddings ({stored.type}, {stored.names:,} names)", stored.file,
                                      stored.encoded, stored.seconds))
    return out
