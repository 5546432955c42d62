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
from llmner.modeling.selector import (
    ONNX_OUTPUT_NAMES,
    SelectorModel,
    TokenBatch,
    onnx_input_names,
)

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
    input_names = onnx_input_names(model.config.head)
    feats = graph_inputs(model.featurize(_SAMPLE))
    args = tuple(torch.from_numpy(feats[name]) for name in input_names)
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    # The span head returns one value per row; the tokens head three per piece.
    out_axes = {0: "batch"} if model.config.head == "span" else {0: "batch", 1: "sequence"}
    axes.update({name: out_axes for name in ONNX_OUTPUT_NAMES})

    def write(tmp: Path) -> None:
        import warnings

        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            # TorchScript exporter: its eager-attention graph is what the BERT fusion matches.
            torch.onnx.export(model, args, str(tmp), input_names=list(input_names),
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
    """Dynamic int8, per-channel weights (per-tensor costs accuracy on MiniLM), in 7 bits.

    Why 7: ONNX Runtime multiplies uint8 activations by int8 weights with VPMADDUBSW on CPUs without
    VNNI (AVX2, AVX-512 before Cascade Lake), which adds each pair of products into a saturating int16.
    With 8-bit weights a pair reaches 2·255·127 > 32,767, so the same graph scored candidates
    differently on such hosts (session 28's AVX2 host moved dev F1 by up to 2 points a corpus against
    VNNI hosts). With weights in [-64, 64] a pair is at most 2·255·64 = 32,640: no host saturates, and
    every CPU computes the same integer products."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)

    def write(tmp: Path) -> None:
        quantize_dynamic(str(fused), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
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


def graph_inputs(feats: dict[str, np.ndarray] | TokenBatch) -> dict[str, np.ndarray]:
    """What the graph is fed for featurized candidates (the tokens head's rows, or the span head's)."""
    return feats.inputs if isinstance(feats, TokenBatch) else feats


def candidate_probabilities(feats: dict[str, np.ndarray] | TokenBatch, probabilities: np.ndarray) -> np.ndarray:
    """One probability per candidate from the graph's output (the tokens head's are combined per span)."""
    return feats.scores(probabilities) if isinstance(feats, TokenBatch) else probabilities


def batched_feeds(model: SelectorModel, candidates: Sequence[Candidate], batch_size: int = 32) -> list[dict[str, np.ndarray] | TokenBatch]:
    return [model.featurize(candidates[i : i + batch_size]) for i in range(0, len(candidates), batch_size)]


def onnx_scores(path: str | Path, batches: Sequence[dict[str, np.ndarray] | TokenBatch],
                providers: Sequence[str] = ("CPUExecutionProvider",)) -> np.ndarray:
    """The candidates' probabilities under an ONNX graph."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=list(providers))
    return np.concatenate([candidate_probabilities(f, session.run([ONNX_OUTPUT_NAMES[1]], graph_inputs(f))[0])
                           for f in batches])


def check_parity(model: SelectorModel, onnx_path: str | Path, candidates: Sequence[Candidate] | None = None,
                 batch_size: int = 32) -> ParityReport:
    """Max abs difference between PyTorch and an ONNX graph on the same inputs: of the candidates'
    probabilities, and of the graph's raw logits (per row, or per piece for the tokens head)."""
    import onnxruntime as ort

    candidates = list(candidates or _SAMPLE)
    batches = batched_feeds(model, candidates, batch_size)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model.eval()
    d_prob = d_logit = 0.0
    for feats in batches:
        inputs = graph_inputs(feats)
        with torch.inference_mode():
            t_logits, t_probs = (t.numpy() for t in model(**{k: torch.from_numpy(v) for k, v in inputs.items()}))
        o_logits, o_probs = session.run(list(ONNX_OUTPUT_NAMES), inputs)
        d_logit = max(d_logit, float(np.abs(t_logits - o_logits).max()))
        d_prob = max(d_prob, float(np.abs(candidate_probabilities(feats, t_probs) - candidate_probabilities(feats, o_probs)).max()))
    return ParityReport(d_prob, d_logit, len(candidates))


def check_agreement(reference: np.ndarray, other: np.ndarray, threshold: float) -> AgreementReport:
    """How often two variants make the same accept/reject decision at ``threshold``."""
    if reference.shape != other.shape or reference.size == 0:
        raise ConfigError("agreement needs two non-empty score arrays of the same length")
    same = (reference >= threshold) == (other >= threshold)
    return AgreementReport(float(same.mean()), float(np.abs(reference - other).max()), int(reference.size), threshold)
