"""The selector on the real packaged MiniLM-L6 (slow: loads the 90 MB encoder, exports ONNX)."""

from __future__ import annotations

import numpy as np
import pytest

from llmner.doc import Candidate
from llmner.modeling.selector import SelectorConfig, SelectorModel, resolve_encoder

pytestmark = pytest.mark.slow


def test_packaged_minilm_selector_round_trip_size_and_onnx_parity(tmp_path):
    from llmner.modeling.selector_export import (
        batched_feeds,
        build_variants,
        check_agreement,
        check_parity,
        onnx_scores,
    )

    path = resolve_encoder("packaged:minilm")
    assert (path / "model.safetensors").is_file() and path.name == "model"
    model = SelectorModel.from_encoder(SelectorConfig(model_id="minilm-test", threshold=0.42))
    assert model.encoder.config.hidden_size == 384 and len(model.encoder.encoder.layer) == 6
    model.round_to_save_dtype()
    model.save_pretrained(tmp_path / "sel")
    size = sum(p.stat().st_size for p in (tmp_path / "sel").iterdir())
    assert size < 10_000_000      # top 2 layers in fp16 + head, not the 90 MB encoder
    loaded = SelectorModel.from_pretrained(tmp_path / "sel")
    text = "Germline mutations in BRCA1 predispose to breast cancer and ovarian cancer in 12 families."
    cands = [Candidate(text, s, e, t, "a disease" if t == "Disease" else "a gene")
             for s, e, t in [(22, 27, "Gene"), (44, 57, "Disease"), (62, 76, "Disease"), (44, 50, "Disease"), (0, 8, "Gene")]]
    np.testing.assert_allclose(loaded.score(cands), model.score(cands), atol=1e-6)
    assert loaded.threshold == pytest.approx(0.42)
    paths = build_variants(loaded, tmp_path / "onnx", ("fp32", "int8"))
    report = check_parity(loaded, paths["fp32"], cands)
    assert report.ok, report
    feeds = batched_feeds(loaded, cands)
    p32 = onnx_scores(paths["fp32"], feeds)
    p8 = onnx_scores(paths["int8"], feeds)
    assert check_agreement(p32, p8, 0.5).max_abs_diff < 0.05
