import subprocess
import sys


def test_errors_are_one_line_without_traceback(tmp_path):
    missing = tmp_path / ("a-very-long-directory-name-" * 6) / "gold.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "llmner.cli.main", "eval", "--gold", str(missing), "--pred", str(missing)],
        capture_output=True, text=True, env={"COLUMNS": "40", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err
    assert err.startswith("error:") and "\n" not in err, err


def test_streaming_commands_are_discovered_through_the_entry_point():
    proc = subprocess.run([sys.executable, "-m", "llmner.cli.main", "--help"], capture_output=True, text=True,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0
    for command in ("data", "eval", "tag", "train", "curate", "run", "submit", "results"):
        assert f" {command} " in proc.stdout, command


def test_bundle_command_assembles_a_bundle_the_pipeline_loads(tmp_path) -> None:
    from typer.testing import CliRunner

    from llmner.bundle import load_manifest
    from llmner.cli.main import app
    from llmner.testing import build_tiny_bundle

    parts = build_tiny_bundle(tmp_path / "tiny").parent / "tiny-parts"
    (parts / "sel" / "training_card.json").write_text('{"model_id": "sel-from-card"}')
    runner = CliRunner()
    out = tmp_path / "assembled"
    result = runner.invoke(app, ["bundle", "--generator", str(parts / "gen"), "--selector", str(parts / "sel"),
                                 "--output", str(out), "--name", "assembled", "--threshold", "0.25",
                                 "--selector-language", "en", "--default-schema", "en=bc5cdr",
                                 "--default-schema", "zh=clinical_zh", "--prompt-schema", "clinical_zh=cmeee"])
    assert result.exit_code == 0, result.output
    assert "bundle" in result.output and "MB" in result.output
    manifest = load_manifest(out)
    from llmner.bundle import assembled_size_bytes, bundle_size_bytes

    # The size checked before writing is the size written.
    assert assembled_size_bytes(out, parts / "gen", parts / "sel", manifest) == bundle_size_bytes(out)
    assert (manifest.name, manifest.selector_id, manifest.selector_threshold, manifest.has_selector) == \
        ("assembled", "sel-from-card", 0.25, True)
    from llmner.pipeline import Pipeline, PipelineConfig

    assert manifest.selector_languages == ["en"] and manifest.default_schemas == {"en": "bc5cdr", "zh": "clinical_zh"}
    assert manifest.prompt_schemas == {"clinical_zh": "cmeee"}
    pipe = Pipeline.from_bundle(out, PipelineConfig(selector_backend="torch"))
    assert pipe.model_ids["bundle"] == "assembled" and pipe.config.selector_languages == ("en",)
    assert manifest.sentences_per_chunk == 1
    # A generator trained on chunks of several sentences: the bundle serves it on chunks of as many.
    (parts / "gen" / "training_card.json").write_text('{"training": {"sentences_per_chunk": 4}}')
    no_sel = runner.invoke(app, ["bundle", "--generator", str(parts / "gen"), "--output", str(tmp_path / "g")])
    assert no_sel.exit_code == 0 and not load_manifest(tmp_path / "g").has_selector
    assert load_manifest(tmp_path / "g").consistency is None      # off unless asked for
    with_step = runner.invoke(app, ["bundle", "--generator", str(parts / "gen"), "--output", str(tmp_path / "c"),
                                    "--consistency"])
    assert with_step.exit_code == 0, with_step.output
    assert Pipeline.from_bundle(tmp_path / "c", PipelineConfig(selector_backend="none")).consistency.repeats
    assert load_manifest(tmp_path / "g").sentences_per_chunk == 4
    bad = runner.invoke(app, ["bundle", "--generator", str(parts / "sel"), "--output", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "generator_config.json not found" in str(bad.exception)
    wrong = runner.invoke(app, ["bundle", "--generator", str(parts / "gen"), "--output", str(tmp_path / "z"),
                                "--default-schema", "bc5cdr"])
    assert wrong.exit_code != 0 and "expected LANG=SCHEMA" in str(wrong.exception)
    unpaired = runner.invoke(app, ["bundle", "--generator", str(parts / "gen"), "--output", str(tmp_path / "p"),
                                   "--prompt-schema", "clinical_zh=bc5cdr"])
    assert unpaired.exit_code != 0 and "different languages" in str(unpaired.exception)
    big = runner.invoke(app, ["bundle", "--generator", str(parts / "gen"), "--output", str(tmp_path / "y"),
                              "--max-bytes", "10"])
    assert big.exit_code != 0 and "over --max-bytes" in str(big.exception)
    assert not (tmp_path / "y").exists()          # refused before anything was written
    # Over the limit into an existing bundle: the bundle stays as it was.
    before = {p: p.read_bytes() for p in (tmp_path / "g").rglob("*") if p.is_file()}
    over = runner.invoke(app, ["bundle", "--generator", str(parts / "gen"), "--selector", str(parts / "sel"),
                               "--output", str(tmp_path / "g"), "--max-bytes", "10"])
    assert over.exit_code != 0 and "nothing written" in str(over.exception)
    assert {p: p.read_bytes() for p in (tmp_path / "g").rglob("*") if p.is_file()} == before


def test_the_default_bundle_stays_within_the_shipped_size_limit() -> None:
    from llmner.bundle import (
        MAX_SHIPPED_BUNDLE_BYTES,
        bundle_size_bytes,
        default_bundle_path,
    )

    root = default_bundle_path()
    assert root is not None, "llmner/bundles/default is missing"
    assert bundle_size_bytes(root) <= MAX_SHIPPED_BUNDLE_BYTES
