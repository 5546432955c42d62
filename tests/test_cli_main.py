import subprocess
import sys


def test_errors_are_one_line_without_traceback(tmp_path):
    missing = tmp_path / ("a-very-long-directory-name-" * 6) / "gold.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "llmner.cli.main", "eval", "--gold", str(missing), "--pred", str(missing)],
        check=False, capture_output=True, text=True, env={"COLUMNS": "40", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err
    assert err.startswith("error:") and "\n" not in err, err


def test_streaming_commands_are_discovered_through_the_entry_point():
    proc = subprocess.run([sys.executable, "-m", "llmner.cli.main", "--help"], check=False, capture_output=True, text=True,
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


def test_bundle_command_assembles_proposers_each_under_its_schemas(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from llmner.bundle import (
        ProposerEntry,
        assembled_size_bytes,
        bundle_size_bytes,
        load_manifest,
    )
    from llmner.cli.main import app
    from llmner.testing import build_tiny_bundle

    parts = build_tiny_bundle(tmp_path / "tiny", proposer_schemas=["bc5cdr", "ncbi_disease"]).parent / "tiny-parts"
    first, second = parts / "proposer-bc5cdr", parts / "proposer-ncbi_disease"
    (parts / "training_card.json").write_text(json.dumps({"threshold_on_held_out": 0.7}))   # the run's card, beside reader/
    runner = CliRunner()
    out = tmp_path / "with-proposers"
    args = ["bundle", "--generator", str(parts / "gen"), "--selector", str(parts / "sel"), "--output", str(out)]
    result = runner.invoke(app, [*args, "--proposer", f"bc5cdr,jnlpba={first}", "--proposer", f"ncbi_disease={second}"])
    assert result.exit_code == 0, result.output
    manifest = load_manifest(out)
    assert manifest.proposers == [ProposerEntry("proposers/bc5cdr", "proposer-bc5cdr", ["bc5cdr", "jnlpba"], 0.7),
                                  ProposerEntry("proposers/ncbi_disease", "proposer-ncbi_disease", ["ncbi_disease"], 0.7)]
    assert (out / "proposers" / "ncbi_disease" / "reader_head.safetensors").is_file()
    dirs = {"proposers/bc5cdr": first, "proposers/ncbi_disease": second}
    assert assembled_size_bytes(out, parts / "gen", parts / "sel", manifest, None, dirs) == bundle_size_bytes(out)
    given = runner.invoke(app, [*args, "--proposer", f"bc5cdr={first}", "--proposer-threshold", "0.4"])
    assert given.exit_code == 0 and load_manifest(out).proposers[0].threshold == 0.4
    (parts / "training_card.json").unlink()
    unchosen = runner.invoke(app, [*args, "--proposer", f"bc5cdr={first}"])
    assert unchosen.exit_code != 0 and "threshold_on_held_out" in str(unchosen.exception)
    twice = runner.invoke(app, [*args, "--proposer", f"bc5cdr={first}", "--proposer", f"bc5cdr={second}",
                                "--proposer-threshold", "0.5"])
    assert twice.exit_code != 0 and "more than one proposer" in str(twice.exception)
    assert load_manifest(out).proposers[0].threshold == 0.4       # refused before anything was written
    malformed = runner.invoke(app, [*args, "--proposer", str(first)])
    assert malformed.exit_code != 0 and "SCHEMA[,SCHEMA...]=DIR" in str(malformed.exception)
