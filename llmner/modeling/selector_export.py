"""ONNX export of a selector: fp32 graph, BERT fusion, int8 (CPU) and fp16 (CUDA) variants.

Split of responsibilities: this module is the core and lives in the library because the ONNX
runtime (``llmner.runtime.onnx_selector``) builds the derived files from a selector directory on first use,
and the library must work without the ``export/`` package. ``export/onnx_selector.py`` is only the
command-line layer over these functions (explicit builds, parity and agreement reports).

Facts this relies on (measured; ``tests/test_export_selector.py`` checks parity): the TorchScript exporter with eager attention
gives a graph that ``onnxruntime.transformers`` fuses fully (EmbedLayerNormalization, Attention,
SkipLayerNormalization, BiasGelu); int8 must be per-channel (per-tensor loses accuracy) and fused
models need ``DefaultTensorType`` for quantization.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llmner.doc import Candidate
from llmner.errors import ConfigError
from llmner.modeling.selector import ONNX_INPUT_NAMES, ONNX_OUTPUT_NAMES, SelectorModel

log = logging.getLogger(__name__)

VARIANTS = ("fp32", "int8", "fp16")
OPSET = 17
PARITY_TOLERANCE = 1e-4
AGREEMENT_TARGET = 0.99

_SAMPLE = [
    Candidate("Patients with ovarian cancer and breast cancer were studied.", 14, 28, "Disease", "a disease"),
    Candidate("BRCA1 is a gene.", 0, 5, "Gene", "a gene or protein"),
    Candidate("Mutations in BRCA1 cause familial breast cancer in women.", 13, 18, "Gene", "a gene"),
]


@dataclass(slots=True)
class ParityReport:
    max_abs_diff_probability: float
    max_abs_diff_logit: float
    candidates: int

    @property
    def ok(self) -> bool:
        return self.max_abs_diff_probability <= PARITY_TOLERANCE


@dataclass(slots=True)
class AgreementReport:
    agreement: float          # share of candidates whose accept/reject decision is the same
    max_abs_diff: float       # largest probability difference
    candidates: int
    threshold: float

    @property
    def ok(self) -> bool:
        return self.agreement >= AGREEMENT_TARGET


def _atomic_save(write, path: Path) -> None:
    """Write via ``write(tmp_path)`` into the target directory, then rename (no half files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_fp32(model: SelectorModel, path: str | Path) -> Path:
    """Plain fp32 ONNX graph with dynamic batch and sequence axes (no fusion)."""
    path = Path(path)
    model = model.eval()
    feats = model.featurize(_SAMPLE)
    args = tuple(torch.from_numpy(feats[name]) for name in ONNX_INPUT_NAMES)
    axes = {name: {0: "batch", 1: "sequence"} for name in ONNX_INPUT_NAMES}
    axes.update({name: {0: "batch"} for name in ONNX_OUTPUT_NAMES})

    def write(tmp: Path) -> None:
        import warnings

        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            # TorchScript exporter: its eager-attention graph is what the BERT fusion matches.
            torch.onnx.export(model, args, str(tmp), input_names=list(ONNX_INPUT_NAMES),
                              output_names=list(ONNX_OUTPUT_NAMES), dynamic_axes=axes, opset_version=OPSET,
                              dynamo=False)

    _atomic_save(write, path)
    return path


def _optimizer(src: Path, model: SelectorModel, use_gpu: bool):
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = model.encoder.config
    return optimize_model(str(src), model_type="bert", num_heads=cfg.num_attention_heads,
                          hidden_size=cfg.hidden_size, use_gpu=use_gpu)


def fuse(src: str | Path, dst: str | Path, model: SelectorModel) -> Path:
    """BERT operator fusion (attention, layer norms, GELU) for CPU; same numbers, fewer ops."""
    dst = Path(dst)
    opt = _optimizer(Path(src), model, use_gpu=False)
    stats = opt.get_fused_operator_statistics()
    log.info("selector ONNX fusion: %s", {k: v for k, v in stats.items() if v})
    _atomic_save(lambda tmp: opt.save_model_to_file(str(tmp)), dst)
    return dst


def quantize_int8(fused: str | Path, dst: str | Path) -> Path:
    """Dynamic int8, per-channel weights (per-tensor costs accuracy on MiniLM)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)

    def write(tmp: Path) -> None:
        quantize_dynamic(str(fused), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})

    _atomic_save(write, dst)
    return dst


def convert_fp16(src: str | Path, dst: str | Path, model: SelectorModel) -> Path:
    """fp16 weights and compute for CUDA, fp32 inputs and outputs (same feeds as fp32)."""
    dst = Path(dst)
    opt = _optimizer(Path(src), model, use_gpu=True)
    opt.convert_float_to_float16(keep_io_types=True)
    _atomic_save(lambda tmp: opt.save_model_to_file(str(tmp)), dst)
    return dst


def build_variants(model: SelectorModel, out_dir: str | Path, variants: Sequence[str] = ("fp32", "int8")) -> dict[str, Path]:
    """Export the requested variants into ``out_dir``; returns {variant: path}. fp32 is the fused graph."""
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ConfigError(f"unknown ONNX variant(s) {sorted(unknown)} (expected {', '.join(VARIANTS)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = export_fp32(model, out / "selector.raw.onnx")
    paths: dict[str, Path] = {}
    fused = fuse(raw, out / "selector.fp32.onnx", model)
    if "fp32" in variants:
        paths["fp32"] = fused
    if "int8" in variants:
        paths["int8"] = quantize_int8(fused, out / "selector.int8.onnx")
    if "fp16" in variants:
        paths["fp16"] = convert_fp16(raw, out / "selector.fp16.onnx", model)
    raw.unlink(missing_ok=True)
    if "fp32" not in variants:
        fused.unlink(missing_ok=True)
    return paths


def onnx_probabilities(path: str | Path, feeds_list: Sequence[dict[str, np.ndarray]],
                       providers: Sequence[str] = ("CPUExecutionProvider",)) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=list(providers))
    logits, probs = [], []
    for feeds in feeds_list:
        lg, pr = session.run(list(ONNX_OUTPUT_NAMES), feeds)
        logits.append(lg)
        probs.append(pr)
    return np.concatenate(logits), np.concatenate(probs)


def batched_feeds(model: SelectorModel, candidates: Sequence[Candidate], batch_size: int = 32) -> list[dict[str, np.ndarray]]:
    return [model.featurize(candidates[i : i + batch_size]) for i in range(0, len(candidates), batch_size)]


def check_parity(model: SelectorModel, onnx_path: str | Path, candidates: Sequence[Candidate] | None = None,
                 batch_size: int = 32) -> ParityReport:
    """Max abs difference between PyTorch and an ONNX graph on the same inputs."""
    candidates = list(candidates or _SAMPLE)
    feeds = batched_feeds(model, candidates, batch_size)
    model.eval()
    with torch.inference_mode():
        torch_out = [model(**{k: torch.from_numpy(v) for k, v in f.items()}) for f in feeds]
    t_logits = np.concatenate([o[0].numpy() for o in torch_out])
    t_probs = np.concatenate([o[1].numpy() for o in torch_out])
    o_logits, o_probs = onnx_probabilities(onnx_path, feeds)
    return ParityReport(float(np.abs(t_probs - o_probs).max()), float(np.abs(t_logits - o_logits).max()), len(candidates))


def check_agreement(reference: np.ndarray, other: np.ndarray, threshold: float) -> AgreementReport:
    """How often two variants make the same accept/reject decision at ``threshold``."""
    if reference.shape != other.shape or reference.size == 0:
        raise ConfigError("agreement needs two non-empty score arrays of the same length")
    same = (reference >= threshold) == (other >= threshold)
    return AgreementReport(float(same.mean()), float(np.abs(reference - other).max()), int(reference.size), threshold)
