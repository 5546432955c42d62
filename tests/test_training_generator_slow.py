"""End-to-end smoke on the real packaged SmolLM2 and NCBI-Disease (slow: run with ``-m slow``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from llmner.bundle import MAX_SHIPPED_BUNDLE_BYTES
from llmner.cli.main import app
from llmner.modeling.generator import GeneratorModel
from llmner.training.generator import generator_size

pytestmark = pytest.mark.slow


def test_train_generator_cli_on_the_packaged_model_then_curate(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    runner = CliRunner()
    result = runner.invoke(app, ["train", "generator", "--corpus", "ncbi_disease", "--steps", "2", "--batch-size", "2",
                                 "--max-documents", "3", "--lr", "1e-3", "--output", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "training_card.json").read_text())
    assert card["steps"] == 2 and card["corpora"]["ncbi_disease"]["documents"] == 3
    assert card["corpora"]["ncbi_disease"]["source_files"]["file_count"] > 0
    assert generator_size(out) < MAX_SHIPPED_BUNDLE_BYTES
    loaded = GeneratorModel.from_pretrained(out)
    schema = loaded.schema("ncbi_disease")
    prompt = loaded.prompt_builder.prompt(loaded.tokenizer, "Ataxia telangiectasia is a recessive disorder.", schema)
    ids = loaded.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        tuned = loaded.model(input_ids=ids).logits
        with loaded.model.disable_adapter():
            base = loaded.model(input_ids=ids).logits
    assert not torch.allclose(tuned, base, atol=1e-5), "two steps at lr 1e-3 must move the adapter"

    subset = tmp_path / "subset.jsonl"
    result = runner.invoke(app, ["curate", "--corpus", "ncbi_disease", "--max-documents", "2", "--keep-percent", "50",
                                 "--output", str(subset), "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "subset.summary.json").read_text())
    rows = subset.read_text().splitlines()
    assert summary["kept"] == len(rows) > 0 and summary["ifd_quantiles_with_entities"] is not None
