"""SelectorRuntime on ONNX Runtime: fp16 on CUDA, int8 (per-channel dynamic) on CPU.

The ONNX files are derived from the selector directory on first use and cached under
``$LLMNER_CACHE_DIR/selector-onnx/<key>/`` (default ``~/.cache/llmner``); the key hashes the
selector's config and weights, the base encoder fingerprint and the export code version, so a new
selector never reuses a stale graph. Files are written atomically (temp file + rename) under a lock,
so concurrent workers build once and never read half a file. The export itself lives in
``llmner.modeling.selector_export``; ``export/`` is the command-line layer over it.

ONNX Runtime silently falls back to CPU when the CUDA provider cannot be created; this runtime
checks the provider it actually got, logs it, and raises ``ConfigError`` when it differs from the
one it asked for.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmner.cache import cached
from llmner.doc import Candidate
from llmner.errors import ConfigError, DataNotFoundError
from llmner.modeling.selector import (
    CONFIG_NAME,
    ONNX_OUTPUT_NAMES,
    WEIGHTS_NAME,
    SelectorConfig,
    SelectorFeaturizer,
    TokenFeaturizer,
    TokenWindow,
    selector_tokenizer,
)
from llmner.runtime.base import SelectorRuntime
from llmner.runtime.torch_selector import length_order

log = logging.getLogger(__name__)

EXPORT_VERSION = "2"       # bump when the export recipe changes: invalidates cached graphs and report rows (2: 7-bit int8 weights)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def selector_key(selector_dir: str | Path) -> str:
    """Content hash of a saved selector (config + weights + export recipe version)."""
    src = Path(selector_dir)
    h = hashlib.sha256(EXPORT_VERSION.encode())
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        path = src / name
        if not path.is_file():
            raise DataNotFoundError(f"no selector at {src}: {name} missing")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:20]


def choose_provider(prefer: str = "auto") -> str:
    """CUDA when ONNX Runtime reports it available (and not disabled), else CPU."""
    import onnxruntime as ort

    if prefer not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"unknown ONNX device {prefer!r} (auto, cuda or cpu)")
    available = ort.get_available_providers()
    if prefer == "cpu":
        return CPU
    if CUDA in available:
        return CUDA
    if prefer == "cuda":
        raise ConfigError(f"ONNX device 'cuda' requested but onnxruntime offers only {', '.join(available)} (install onnxruntime-gpu)")
    return CPU


def onnx_file(selector_dir: str | Path, variant: str, cache_dir: str | Path | None = None) -> Path:
    """Where the ONNX file of ``variant`` for a selector directory is (or is to be built): under
    ``cache_dir`` when given, else a prebuilt directory's copy or the cache's (``llmner.cache.cached``)."""
    relative = Path("selector-onnx") / selector_key(selector_dir)
    name = f"selector.{variant}.onnx"
    return Path(cache_dir) / relative / name if cache_dir else cached(relative, name) / name


def ensure_onnx(selector_dir: str | Path, variant: str, cache_dir: str | Path | None = None) -> Path:
    """The cached ONNX file of ``variant`` for a selector directory, built on first use (a prebuilt
    directory's copy, ``llmner.cache.cached``, is read when ``cache_dir`` is not given)."""
    from llmner.modeling.selector_export import VARIANTS

    if variant not in VARIANTS:
        raise ConfigError(f"unknown ONNX variant {variant!r} (expected {', '.join(VARIANTS)})")
    target = onnx_file(selector_dir, variant, cache_dir)
    out_dir = target.parent
    if target.is_file():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # another process may be building the same file
        if not target.is_file():
            from llmner.modeling.selector import SelectorModel
            from llmner.modeling.selector_export import build_variants, check_parity

            log.info("building ONNX selector (%s) into %s", variant, out_dir)
            model = SelectorModel.from_pretrained(selector_dir)
            paths = build_variants(model, out_dir, (variant,))
            if variant == "fp32":
                report = check_parity(model, paths["fp32"])
                if not report.ok:
                    paths["fp32"].unlink()
                    raise ConfigError(f"ONNX selector parity failed: max |dp| {report.max_abs_diff_probability:.2e} > 1e-4")
    return target


class OnnxSelectorRuntime(SelectorRuntime):
    """Scores candidates with an ONNX Runtime session over a cached, derived graph."""

    def __init__(self, selector_dir: str | Path, device: str = "auto", variant: str | None = None,
                 cache_dir: str | Path | None = None, batch_size: int = 32, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.selector_dir = Path(selector_dir)
        if not (self.selector_dir / CONFIG_NAME).is_file():
            raise DataNotFoundError(f"no selector at {self.selector_dir}: {CONFIG_NAME} missing")
        self.config = SelectorConfig.from_dict(json.loads((self.selector_dir / CONFIG_NAME).read_text()))
        self.threshold = self.config.threshold
        self.model_id = self.config.model_id or "selector"
        self.batch_size = batch_size
        self.provider = choose_provider(device)
        self.variant = variant or ("fp16" if self.provider == CUDA else "int8")
        self.path = ensure_onnx(self.selector_dir, self.variant, cache_dir)
        tokenizer = selector_tokenizer(self.config)
        self.featurizer: SelectorFeaturizer | TokenFeaturizer = (
            TokenFeaturizer(tokenizer, self.config) if self.config.head == "tokens" else SelectorFeaturizer(tokenizer, self.config))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = [self.provider] if self.provider == CPU else [self.provider, CPU]
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        got = self.session.get_providers()
        log.info("ONNX selector %s (%s) on %s", self.path.name, self.model_id, got[0] if got else "nothing")
        if not got or got[0] != self.provider:
            log.error("ONNX Runtime asked for %s but runs on %s", self.provider, got)
            raise ConfigError(f"ONNX Runtime asked for {self.provider} but got {', '.join(got) or 'no provider'} (silent fallback)")

    def score(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """Row by row for the int8 graph (``score_row_by_row``: why), in batches of ``batch_size`` otherwise."""
        return self.score_row_by_row(candidates) if self.variant == "int8" else self.score_in_batches(candidates)

    def score_in_batches(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """Scores computed ``batch_size`` candidates per run (exact for the fp32 and fp16 graphs, whose rows
        do not interact)."""
        if isinstance(self.featurizer, TokenFeaturizer):
            # In order: a chunk's candidates come together, so each batch shares its (window, type) rows.
            scores = []
            for i in range(0, len(candidates), self.batch_size):
                batch = self.featurizer(candidates[i : i + self.batch_size])
                scores.append(batch.scores(self.session.run([ONNX_OUTPUT_NAMES[1]], batch.inputs)[0]))
            return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
        out = np.zeros(len(candidates), dtype=np.float32)
        order = length_order(candidates, self.config.context_chars)
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            feeds = self.featurizer([candidates[j] for j in idx])
            out[idx] = self.session.run([ONNX_OUTPUT_NAMES[1]], feeds)[0].astype(np.float32)
        return out

    def score_row_by_row(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """One encoder row per run. The int8 graph quantizes activations dynamically, with one scale per
        tensor of a run, so in a batch a candidate's score would depend on the other rows and their padding:
        the same document could keep an entity in one batch and lose it in another (measured on the shipped
        selector: scores moved by up to 0.18 between batch sizes 32 and 1). Row by row, a score is a function
        of the candidate alone, and on a CPU it costs nothing: no padding is computed
        (``benchmarks/selector_batching.py``). The tokens head's candidates of one (window, type) share their row."""
        out = np.zeros(len(candidates), dtype=np.float32)
        groups: dict[Any, list[int]] = {}
        for i, cand in enumerate(candidates):
            key = self.featurizer.window(cand) if isinstance(self.featurizer, TokenFeaturizer) else i
            groups.setdefault(key, []).append(i)
        for idx in groups.values():
            members = [candidates[j] for j in idx]
            if isinstance(self.featurizer, TokenFeaturizer):
                batch = self.featurizer(members)
                out[idx] = batch.scores(self.session.run([ONNX_OUTPUT_NAMES[1]], batch.inputs)[0])
            else:
                out[idx] = self.session.run([ONNX_OUTPUT_NAMES[1]], self.featurizer(members))[0].astype(np.float32)
        return out

    def token_featurizer(self) -> TokenFeaturizer | None:
        return self.featurizer if isinstance(self.featurizer, TokenFeaturizer) else None

    def token_probabilities(self, windows: Sequence[TokenWindow]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Row by row for the int8 graph (``score_row_by_row``: why), in batches otherwise."""
        featurizer = self.token_featurizer()
        if featurizer is None:
            return super().token_probabilities(windows)
        step = 1 if self.variant == "int8" else self.batch_size
        out = []
        for i in range(0, len(windows), step):
            inputs, offsets = featurizer.encode(windows[i : i + step])
            probs = self.session.run([ONNX_OUTPUT_NAMES[1]], inputs)[0].astype(np.float32)
            out += list(zip(offsets, probs, strict=True))
        return out
