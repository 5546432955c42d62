"""ONNX export of the selector: parity, int8 agreement, cache, provider selection (tiny random BERT)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from llmner.doc import Candidate
from llmner.errors import ConfigError
from llmner.modeling.selector import SelectorConfig, SelectorModel
from llmner.modeling.selector_export import (
    batched_feeds,
    build_variants,
    check_agreement,
    check_parity,
    onnx_scores,
)
from llmner.runtime import onnx_selector
from llmner.runtime.onnx_selector import (
    OnnxSelectorRuntime,
    choose_provider,
    ensure_onnx,
)
from llmner.runtime.torch_selector import TorchSelectorRuntime
from llmner.testing import build_tiny_bert

TEXT = ("Germline mutations in the BRCA1 gene predispose women to breast cancer and ovarian cancer, "
        "and cisplatin treatment of (familial) tumours was studied in 12 patients.")


def candidates(n: int = 40) -> list[Candidate]:
    import re

    words = [(m.start(), m.end()) for m in re.finditer(r"\w+", TEXT)]
    out = []
    for i in range(n):
        a = (i * 7) % len(words)
        b = min(len(words) - 1, a + i % 3)
        etype = ("Disease", "Gene", "Chemical")[i % 3]
        text = TEXT[: words[b][1] + ((i // 8) % 5) * 12]   # texts of different lengths
        out.append(Candidate(text, words[a][0], words[b][1], etype, f"a {etype.lower()}"))
    return out


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def selector_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sel")
    enc = build_tiny_bert(root / "enc", hidden=64, layers=2)
    model = SelectorModel.from_encoder(SelectorConfig(encoder=str(enc), trainable_layers=1, threshold=0.5, save_dtype="float32",
                                                      model_id="sel-tiny"))
    # A head with a spread of outputs (a random head sits at ~0.5, where every tiny int8 error flips a decision).
    import torch

    with torch.no_grad():
        model.head[-1].weight.mul_(30.0)
        model.eval()
        model.head[-1].bias.sub_(float(model.logits_for(candidates()).median()))
    model.save_pretrained(root / "selector")
    return root / "selector"


def test_fp32_parity_dynamic_axes_and_int8_agreement(selector_dir, tmp_path):
    model = SelectorModel.from_pretrained(selector_dir)
    paths = build_variants(model, tmp_path, ("fp32", "int8"))
    cands = candidates()
    # Several batch sizes and sequence lengths through one graph (dynamic axes).
    for bs in (1, 7, 32):
        report = check_parity(model, paths["fp32"], cands, batch_size=bs)
        assert report.ok and report.max_abs_diff_logit <= 1e-4, report
    feeds = batched_feeds(model, cands)
    assert len({f["input_ids"].shape[1] for f in batched_feeds(model, cands, 5)}) > 1
    p32 = onnx_scores(paths["fp32"], feeds)
    p8 = onnx_scores(paths["int8"], feeds)
    scores = model.score(cands)
    assert scores.std() > 0.05  # the check below is meaningful only with spread-out scores
    agree = check_agreement(p32, p8, model.threshold)
    assert agree.agreement >= 0.9, agree  # tiny random model; the real >= 99 % is measured by export/
    assert paths["int8"].stat().st_size < paths["fp32"].stat().st_size


def test_int8_weights_fit_in_7_bits_so_no_cpu_saturates_their_products(selector_dir, tmp_path):
    """uint8 activations times int8 weights are summed in pairs into a saturating int16 on CPUs without
    VNNI: only weights in [-64, 64] keep every pair (at most 2 * 255 * 64 = 32,640) in range on every host."""
    import onnx
    from onnx import numpy_helper

    paths = build_variants(SelectorModel.from_pretrained(selector_dir), tmp_path, ("int8",))
    graph = onnx.load(str(paths["int8"])).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(weights) >= 6                              # every encoder matmul (a tiny BERT has at least six)
    assert all(w.min() >= -64 and w.max() <= 64 for w in weights)
    assert max(int(np.abs(w).max()) for w in weights) >= 32   # and the range is used, not collapsed


def test_onnx_runtime_builds_cache_once_and_matches_torch(selector_dir, cache_dir, monkeypatch, caplog):
    monkeypatch.setenv("LLMNER_CACHE_DIR", str(cache_dir))
    caplog.set_level(logging.INFO)
    runtime = OnnxSelectorRuntime(selector_dir, device="cpu", variant="fp32")
    assert runtime.path.is_relative_to(cache_dir) and runtime.path.is_file()
    assert "CPUExecutionProvider" in caplog.text
    cands = candidates(20)
    torch_scores = TorchSelectorRuntime.from_pretrained(selector_dir).score(cands)
    np.testing.assert_allclose(runtime.score(cands), torch_scores, atol=1e-4)
    mtime = runtime.path.stat().st_mtime_ns
    again = OnnxSelectorRuntime(selector_dir, device="cpu", variant="fp32")
    assert again.path == runtime.path and again.path.stat().st_mtime_ns == mtime   # reused, not rebuilt
    assert runtime.threshold == 0.5 and runtime.model_id == "sel-tiny"
    assert not list(runtime.path.parent.glob("*.tmp"))


def test_provider_choice_prefers_cuda_when_listed(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert choose_provider("auto") == "CUDAExecutionProvider"
    assert choose_provider("cpu") == "CPUExecutionProvider"
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert choose_provider("auto") == "CPUExecutionProvider"
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        choose_provider("cuda")
    with pytest.raises(ConfigError):
        choose_provider("tpu")


def test_silent_cuda_fallback_is_detected_logged_and_raised(selector_dir, cache_dir, monkeypatch, caplog):
    """ORT claims CUDA is available but the session comes up on CPU: the runtime must refuse."""
    import onnxruntime as ort

    monkeypatch.setenv("LLMNER_CACHE_DIR", str(cache_dir))
    ensure_onnx(selector_dir, "fp32")   # built before the session factory is replaced
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    real_session = ort.InferenceSession
    asked = {}

    def session(path, options=None, providers=None, **kwargs):
        asked["providers"] = providers
        # What a CPU-only build (or a CUDA provider that fails to load) does: run on CPU anyway.
        return real_session(path, options, providers=["CPUExecutionProvider"], **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", session)
    caplog.set_level(logging.INFO)
    with pytest.raises(ConfigError, match="asked for CUDAExecutionProvider but got CPUExecutionProvider"):
        OnnxSelectorRuntime(selector_dir, variant="fp32")
    assert asked["providers"][0] == "CUDAExecutionProvider"
    assert "asked for CUDAExecutionProvider" in caplog.text


def test_fp16_variant_for_cuda_builds(selector_dir, tmp_path):
    import onnx

    path = ensure_onnx(selector_dir, "fp16", tmp_path)
    graph = onnx.load(str(path))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.graph.initializer)
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert graph.graph.output[1].type.tensor_type.elem_type == onnx.TensorProto.FLOAT   # fp32 I/O kept


def test_cache_key_changes_with_threshold(selector_dir, tmp_path):
    import json
    import shutil

    other = tmp_path / "other"
    shutil.copytree(selector_dir, other)
    cfg = json.loads((other / "selector_config.json").read_text())
    cfg["threshold"] = 0.9
    (other / "selector_config.json").write_text(json.dumps(cfg))
    assert onnx_selector.selector_key(other) != onnx_selector.selector_key(selector_dir)


def test_export_cli_prints_parity(selector_dir, tmp_path, capsys):
    from export.onnx_selector import main

    assert main([str(selector_dir), str(tmp_path / "out"), "--variants", "fp32,int8"]) in (0, 1)
    out = capsys.readouterr().out
    assert "fp32 parity vs PyTorch" in out and "-> OK" in out and "decisions agree" in out


def test_tokens_head_exports_and_the_onnx_runtime_matches_torch(tmp_path, monkeypatch):
    """The tokens head's graph returns O/B/I per piece; both runtimes combine them per candidate alike."""
    import torch

    enc = build_tiny_bert(tmp_path / "enc", hidden=64, layers=2)
    model = SelectorModel.from_encoder(SelectorConfig(encoder=str(enc), head="tokens", trainable_layers=1,
                                                      save_dtype="float32", model_id="sel-tokens"))
    with torch.no_grad():
        model.head[-1].weight.mul_(20.0)    # a spread of piece labels, not a uniform 1/3
    model.save_pretrained(tmp_path / "selector")
    model = SelectorModel.from_pretrained(tmp_path / "selector")
    paths = build_variants(model, tmp_path / "onnx", ("fp32", "int8"))
    cands = candidates()
    for bs in (1, 7, 32):
        report = check_parity(model, paths["fp32"], cands, batch_size=bs)
        assert report.ok and report.max_abs_diff_logit <= 1e-4, report
    scores = model.score(cands)
    assert scores.std() > 0.01
    np.testing.assert_allclose(onnx_scores(paths["fp32"], batched_feeds(model, cands)), scores, atol=1e-4)
    assert check_agreement(scores, onnx_scores(paths["int8"], batched_feeds(model, cands)), float(np.median(scores))).agreement >= 0.9
    monkeypatch.setenv("LLMNER_CACHE_DIR", str(tmp_path / "cache"))
    runtime = OnnxSelectorRuntime(tmp_path / "selector", device="cpu", variant="fp32")
    np.testing.assert_allclose(runtime.score(cands), TorchSelectorRuntime.from_pretrained(tmp_path / "selector").score(cands), atol=1e-4)


@pytest.mark.parametrize("head", ["span", "tokens"])
def test_int8_scores_do_not_depend_on_the_other_candidates_scored_with_them(head, tmp_path, monkeypatch):
    """Dynamic int8 quantization scales each run by its own range: scored in batches, a candidate's score
    moves with its neighbours. The runtime scores int8 row by row, so a score is the candidate's alone."""
    import torch

    enc = build_tiny_bert(tmp_path / "enc", hidden=64, layers=2)
    model = SelectorModel.from_encoder(SelectorConfig(encoder=str(enc), head=head, trainable_layers=1,
                                                      save_dtype="float32", model_id=f"sel-{head}"))
    with torch.no_grad():
        model.head[-1].weight.mul_(20.0)
    model.save_pretrained(tmp_path / "selector")
    monkeypatch.setenv("LLMNER_CACHE_DIR", str(tmp_path / "cache"))
    runtime = OnnxSelectorRuntime(tmp_path / "selector", device="cpu", variant="int8", batch_size=16)
    cands = candidates()
    together = runtime.score(cands)
    order = list(range(len(cands)))[::-1]
    np.testing.assert_array_equal(runtime.score([cands[i] for i in order]), together[order])
    alone = np.array([runtime.score([c])[0] for c in cands[:10]])
    np.testing.assert_array_equal(alone, together[:10])
    assert runtime.score([]).shape == (0,)
    # Batched, the same graph gives scores that depend on the batch (what row by row avoids).
    batched = runtime.score_in_batches(cands)
    assert not np.array_equal([runtime.score_in_batches([c])[0] for c in cands[:10]], batched[:10])
