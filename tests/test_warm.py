"""`llmner warm` and the prebuilt directories it fills: what a bundle's first load derives is built
once (an image's build) and read by every later load, which then builds nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmner.cache import cache_dir, cached
from llmner.cli.main import app
from llmner.pipeline import Pipeline, PipelineConfig
from llmner.testing import build_tiny_bundle
from llmner.warm import warm_bundle


def test_cached_searches_prebuilt_directories_first(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMNER_CACHE_DIR", str(tmp_path / "cache"))
    first, second = tmp_path / "first", tmp_path / "second"
    (second / "models" / "m").mkdir(parents=True)
    (second / "models" / "m" / "config.json").write_text("{}")
    (first / "models" / "m").mkdir(parents=True)            # there, but without its marker: half built
    (second / "selector-onnx").mkdir()
    (second / "selector-onnx" / "f.onnx").write_text("x")
    monkeypatch.setenv("LLMNER_PREBUILT_DIR", f"{first}:{second}")
    assert cached(Path("models") / "m", "config.json") == second / "models" / "m"
    assert cached(Path("selector-onnx") / "f.onnx") == second / "selector-onnx" / "f.onnx"
    assert cached(Path("models") / "other", "config.json") == cache_dir() / "models" / "other"
    monkeypatch.delenv("LLMNER_PREBUILT_DIR")
    assert cached(Path("models") / "m", "config.json") == tmp_path / "cache" / "models" / "m"


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("warm") / "bundle")


def test_warm_builds_once_and_a_pod_reads_the_prebuilt_copy(tiny_bundle, tmp_path, monkeypatch):
    image = tmp_path / "image"
    monkeypatch.setenv("LLMNER_CACHE_DIR", str(image))
    monkeypatch.setenv("LLMNER_NORMALIZER_EMBEDDINGS", str(tmp_path / "embeddings"))
    warmed = warm_bundle(tiny_bundle, ["int8", "fp32"])
    by_what = {a.what: a for a in warmed}
    assert set(by_what) == {f"generator base model ({tiny_bundle}-parts/base)", "selector ONNX (int8)", "selector ONNX (fp32)"}
    # The tiny generator's base is a local transformers directory: nothing to convert.
    assert not by_what[f"generator base model ({tiny_bundle}-parts/base)"].built
    for variant in ("int8", "fp32"):
        onnx = by_what[f"selector ONNX ({variant})"]
        assert onnx.built and onnx.path.is_file() and onnx.path.is_relative_to(image)
    again = warm_bundle(tiny_bundle, ["int8", "fp32"])
    assert [a.path for a in again] == [a.path for a in warmed] and not any(a.built for a in again)

    # A new pod: an empty cache volume, the image's directory prebuilt. Its pipeline builds nothing.
    pod = tmp_path / "pod-cache"
    monkeypatch.setenv("LLMNER_CACHE_DIR", str(pod))
    monkeypatch.setenv("LLMNER_PREBUILT_DIR", str(image))
    pipe = Pipeline.from_bundle(tiny_bundle, PipelineConfig(device="cpu"))
    assert Path(pipe.selector.path) == by_what["selector ONNX (int8)"].path
    assert not pod.exists()
    pipe("Patients with BRCA1 mutations develop breast cancer.")
    assert not pod.exists()


def test_warm_command(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMNER_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    result = runner.invoke(app, ["warm", str(tiny_bundle), "--onnx-variant", "int8"])
    assert result.exit_code == 0, result.output
    assert "selector ONNX (int8): built in" in result.output
    result = runner.invoke(app, ["warm", str(tiny_bundle), "--onnx-variant", "int8"])
    assert result.exit_code == 0 and "selector ONNX (int8): present" in result.output
    result = runner.invoke(app, ["warm", str(tiny_bundle), "--onnx-variant", "int4"])
    assert result.exit_code != 0 and "unknown ONNX variant 'int4'" in str(result.exception or result.output)
