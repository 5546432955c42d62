"""The ``llmner`` command in a new user's first hour (issue 17): formats guessed from the content,
failures before any model loads, predictions only in the output, type maps in ``eval``, quiet
commands whose stdout is data, ``--version``, flags that read as flags, language mismatch warnings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from llmner.cli.main import app
from llmner.data_processing.corpora import (
    read_bioc_json,
    read_documents,
    read_jsonl,
    read_pubtator,
    write_bioc,
)
from llmner.doc import Document, Entity, ResultRecord
from llmner.errors import LlmnerError

REPO = Path(__file__).resolve().parents[1]
NO_BUNDLE = "/nonexistent/bundle"   # a command that got as far as loading it would fail on it instead
PUBTATOR = ("9949209|t|Copper toxicosis in terriers.\n9949209|a|Wilson disease is rare.\n"
            "9949209\t0\t16\tCopper toxicosis\tSpecificDisease\tD006527\n9949209\t30\t44\tWilson disease\tModifier\tD006527\n\n")


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def subprocess_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "llmner.cli.main", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, check=False, timeout=300)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from llmner.testing import build_tiny_bundle

    return build_tiny_bundle(tmp_path_factory.mktemp("cli") / "bundle")


# ---- fail before any model loads -------------------------------------------------------------------

@pytest.mark.parametrize("case, message", [
    ("empty file", "is empty: nothing to do"),
    ("empty directory", "empty directory: nothing to do"),
    ("unknown schema", "unknown schema"),
    ("line breaks to pubtator", "cannot store a text with line breaks"),
    ("result records", "carry no note text"),
    ("unknown json", "unknown schema (fields note)"),
    ("--lines on pubtator", "--lines splits plain text, but"),
])
def test_tag_fails_before_the_model_loads(tmp_path, case, message):
    out, extra = tmp_path / "out.jsonl", []
    if case == "empty file":
        src = tmp_path / "in.txt"
        src.write_text("")
    elif case == "empty directory":
        src = tmp_path / "dir"
        src.mkdir()
    elif case == "unknown schema":
        src = tmp_path / "in.txt"
        src.write_text("A note.")
        extra = ["--schema", "no_such_schema"]
    elif case == "line breaks to pubtator":
        src = tmp_path / "in.txt"
        src.write_text("A note\nover two lines.")
        out = tmp_path / "out.pubtator"
    elif case == "result records":
        src = tmp_path / "results.jsonl"
        src.write_bytes(ResultRecord("n1", []).to_json() + b"\n")
    elif case == "--lines on pubtator":
        src = tmp_path / "in.txt"
        src.write_text(PUBTATOR)
        extra = ["--lines"]
    else:
        src = tmp_path / "in.jsonl"
        src.write_text('{"note": "x"}\n')
    result = cli("tag", src, "-o", out, "--model", NO_BUNDLE, *extra)
    assert isinstance(result.exception, LlmnerError), result.output
    assert message in str(result.exception) and "bundle" not in str(result.exception)
    assert not out.exists()


# ---- tagging the corpora's own files ----------------------------------------------------------------

def test_tag_reads_a_pubtator_txt_file_and_writes_pubtator_with_abstracts(tiny_bundle, tmp_path):
    src = tmp_path / "NCBItestset_corpus.txt"
    src.write_text(PUBTATOR)
    out = tmp_path / "pred.pubtator"
    result = cli("tag", src, "-o", out, "--model", tiny_bundle, "--selector-backend", "torch")
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "9949209|t|Copper toxicosis in terriers." and lines[1] == "9949209|a|Wilson disease is rare."
    (pred,) = read_pubtator(out)
    assert pred.text == "Copper toxicosis in terriers. Wilson disease is rare."
    gold_types = {"SpecificDisease", "Modifier"}
    assert pred.entities and not {e.type for e in pred.entities} & gold_types   # predictions, not the gold


def test_output_format_follows_the_input_when_the_extension_names_none(tmp_path):
    # A new user ran `llmner tag NCBItestset_corpus.txt -o pred.txt` and got JSONL in a .txt file.
    from llmner.cli.tag import output_format_for

    assert output_format_for(tmp_path / "pred.txt", None, "pubtator") == "pubtator"
    assert output_format_for(tmp_path / "pred", None, "bioc") == "bioc"
    assert output_format_for(tmp_path / "pred.jsonl", None, "pubtator") == "jsonl"   # the extension says jsonl
    assert output_format_for(tmp_path / "pred.xml", None, "pubtator") == "bioc"
    assert output_format_for(tmp_path / "pred.txt", None, "text") == "jsonl"          # plain text: llmner documents
    assert output_format_for(tmp_path / "pred.txt", "bioc_json", "pubtator") == "bioc_json"


def test_tag_open_bias_finds_more_candidates(tiny_bundle, tmp_path):
    src = tmp_path / "notes.txt"
    src.write_text("Copper toxicosis in terriers and Wilson disease are rare in cats.\n")
    counts = []
    for extra in ([], ["--open-bias", "30"]):
        out = tmp_path / f"pred{len(extra)}.jsonl"
        result = cli("tag", src, "-o", out, "--model", tiny_bundle, "--selector-backend", "none", *extra)
        assert result.exit_code == 0, result.output
        counts.append(sum(len(json.loads(line)["entities"]) for line in out.read_text().splitlines()))
    assert counts[1] > counts[0]


def test_tag_consistency_flags_force_the_step_on_or_off_and_default_to_the_bundle(tmp_path, monkeypatch):
    from llmner.decoding.consistency import ConsistencyConfig
    from llmner.pipeline import Pipeline

    src = tmp_path / "notes.txt"
    src.write_text("Wilson disease is rare.\n")
    seen = []

    def capture(model, config):   # the config tag builds; stop before any model loads
        seen.append(config.consistency)
        raise LlmnerError("stopped after the config")

    monkeypatch.setattr(Pipeline, "from_bundle", capture)
    for extra in ([], ["--consistency"], ["--no-consistency"]):
        cli("tag", src, "-o", tmp_path / "o.jsonl", "--model", NO_BUNDLE, *extra)
    assert seen == [None, ConsistencyConfig(), ConsistencyConfig.off()]


def test_tag_of_a_bioc_file_holds_predictions_only(tiny_bundle, tmp_path):
    gold = Document("p1", "Cisplatin causes nephrotoxicity in mice.", metadata={"relations": [["CID", "D002945", "D007674"]]})
    gold.entities = [gold.span(0, 9, "Chemical"), gold.span(17, 31, "Disease")]
    src = tmp_path / "gold.xml"
    write_bioc([gold], src)
    out = tmp_path / "pred.json"   # .json: BioC JSON
    result = cli("tag", src, "-o", out, "--model", tiny_bundle, "--selector-backend", "torch")
    assert result.exit_code == 0, result.output
    (pred,) = read_bioc_json(out)
    assert "relations" not in pred.metadata and "CID" not in out.read_text()
    assert pred.metadata["model_ids"]["selector"] == "sel-tiny"
    assert all(e.score is not None for e in pred.entities)


def test_language_mismatch_is_warned_and_text_language_is_detected(tmp_path):
    from llmner.cli.tag import read_input

    src = tmp_path / "zh.txt"
    src.write_text("患者出现发热和咳嗽三天。")
    assert [d.language for d in read_input(src, None)] == ["zh"]
    result = cli("tag", src, "-o", tmp_path / "o.jsonl", "--language", "en", "--model", NO_BUNDLE)
    assert "tagged as 'en' but written in 'zh' script" in result.output
    assert "leave --language out" in result.output


def test_one_rule_for_formats_in_every_command(tmp_path):
    """A .txt file is read by its content in tag and eval alike; an output's extension names its format."""
    from llmner.data_processing.corpora import (
        PLAIN_TEXT,
        guess_format,
        guess_output_format,
        read_plain_text,
    )

    pubtator, plain = tmp_path / "corpus.txt", tmp_path / "note.txt"
    pubtator.write_text(PUBTATOR)
    plain.write_text("Asthma worsened.\n\nCough at night.\n")
    assert guess_format(pubtator) == "pubtator" and guess_format(plain) == PLAIN_TEXT
    assert [d.id for d in read_plain_text(plain, one_per_line=True)] == ["note-1", "note-3"]
    assert [guess_output_format(tmp_path / f"o{ext}", "records") for ext in (".xml", ".json", ".pubtator", ".jsonl")] \
        == ["bioc", "bioc_json", "pubtator", "records"]


# ---- eval ---------------------------------------------------------------------------------------------

def _disease_predictions(tmp_path: Path) -> Path:
    (gold,) = read_pubtator(_gold(tmp_path))
    pred = Document(gold.id, gold.text, entities=[Entity(e.start, e.end, "Disease", e.text) for e in gold.entities])
    path = tmp_path / "pred.jsonl"
    path.write_bytes(pred.to_json() + b"\n")
    return path


def _gold(tmp_path: Path) -> Path:
    path = tmp_path / "NCBItestset_corpus.txt"
    path.write_text(PUBTATOR)
    return path


def _f1(tmp_path: Path, *type_map: str) -> tuple[float, str]:
    report = tmp_path / "report.json"
    result = cli("eval", "--gold", _gold(tmp_path), "--pred", _disease_predictions(tmp_path), "--json", report, *type_map)
    assert result.exit_code == 0, result.output
    return orjson.loads(report.read_bytes())["strict"]["micro"]["f1"], result.output


def test_eval_type_map_scores_ncbi_disease_classes(tmp_path):
    f1, output = _f1(tmp_path)
    assert f1 == 0.0 and "do not intersect" in output and "--type-map ncbi_disease" in output
    f1, output = _f1(tmp_path, "--type-map", "ncbi_disease")
    assert f1 == 1.0 and "do not intersect" not in output
    assert _f1(tmp_path, "--type-map", "SpecificDisease=Disease,Modifier=Disease")[0] == 1.0
    (tmp_path / "map.txt").write_text("# NCBI classes\nSpecificDisease=Disease\nModifier = Disease\n")
    assert _f1(tmp_path, "--type-map", tmp_path / "map.txt")[0] == 1.0
    (tmp_path / "map.json").write_text('{"SpecificDisease": "Disease"}')
    assert _f1(tmp_path, "--type-map", tmp_path / "map.json")[0] == 0.5   # Modifier left unmapped: 1 TP, 1 FP, 1 FN
    bad = cli("eval", "--gold", _gold(tmp_path), "--pred", _disease_predictions(tmp_path), "--type-map", "Disease")
    assert "Gold=Pred" in str(bad.exception)


def test_eval_and_convert_read_result_records(tmp_path):
    (gold,) = read_pubtator(_gold(tmp_path))
    records = tmp_path / "results.jsonl"   # what `llmner run` writes
    records.write_bytes(ResultRecord(gold.id, [Entity(e.start, e.end, "Disease", e.text) for e in gold.entities],
                                     {"generator": "g"}).to_json() + b"\n")
    report = tmp_path / "r.json"
    result = cli("eval", "--gold", _gold(tmp_path), "--pred", records, "--type-map", "ncbi_disease", "--json", report)
    assert result.exit_code == 0, result.output
    assert orjson.loads(report.read_bytes())["strict"]["micro"]["f1"] == 1.0
    converted = cli("convert", _gold(tmp_path), tmp_path / "gold.jsonl", "--to", "jsonl")   # --from guessed
    assert converted.exit_code == 0, converted.output
    assert read_jsonl(tmp_path / "gold.jsonl")[0].text == gold.text
    to_pubtator = cli("convert", records, tmp_path / "x.pubtator", "--to", "pubtator")
    assert "carry no note text" in str(to_pubtator.exception)


# ---- run --output-format --------------------------------------------------------------------------

def test_run_writes_documents_like_tag(tmp_path, monkeypatch):
    """``run --output-format`` joins each result record with its note's text (the streaming part,
    ``run_file``, is replaced by a stand-in that writes the records the workers would)."""
    import workers.embedded
    from workers.embedded import RunSummary

    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"id": "n1", "text": "BRCA1 is mutated.", "mrn": "7"}\n{"id": "n2", "text": ""}\n')

    def fake_run_file(input_path, output_path, **_):
        lines = [ResultRecord("n1", [Entity(0, 5, "Gene", "BRCA1", 0.8)], {"generator": "g"}, metadata={"mrn": "7"}).to_json(),
                 orjson.dumps({"document_id": "n2", "error": "empty_text", "reason": "empty"})]
        Path(output_path).write_bytes(b"\n".join(lines) + b"\n")
        return RunSummary(submitted=2, published=1, dead=1, dead_codes={"empty_text": 1}, output=str(output_path))

    monkeypatch.setattr(workers.embedded, "run_file", fake_run_file)
    for name, fmt in (("out.xml", "bioc"), ("out.jsonl", "jsonl"), ("out.pubtator", "pubtator")):
        args = ["run", notes, "-o", tmp_path / name, "--quiet"] + (["--output-format", "jsonl"] if fmt == "jsonl" else [])
        result = cli(*args)
        assert result.exit_code == 0, result.output
        (doc,) = read_documents(tmp_path / name, fmt)
        assert (doc.id, doc.text, [e.key for e in doc.entities]) == ("n1", "BRCA1 is mutated.", [(0, 5, "Gene")])
    assert read_jsonl(tmp_path / "out.jsonl")[0].metadata["mrn"] == "7"
    assert "left out of the output" in result.output   # the rejected note n2
    bad = cli("run", notes, "-o", tmp_path / "o.x", "--output-format", "csv")
    assert "unknown output format 'csv'" in str(bad.exception)


# ---- quiet, honest commands -------------------------------------------------------------------------

def test_version_and_flags_that_read_as_flags():
    version = subprocess_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == "llmner 0.1.0"
    help_text = subprocess_cli("tag", "--help").stdout
    assert "--lines" in help_text and "<bool>" not in help_text
    assert "<bool>" not in subprocess_cli("--help").stdout


def test_tag_is_quiet_and_its_stdout_is_data(tiny_bundle, tmp_path):
    src = tmp_path / "notes.txt"
    src.write_text("BRCA1 is mutated in breast cancer.\nCisplatin inhibits tumour growth in mice.\n")
    proc = subprocess_cli("tag", src, "--lines", "-o", "/dev/stdout", "--model", tiny_bundle)
    assert proc.returncode == 0, proc.stderr
    docs = [Document.from_json(line) for line in proc.stdout.splitlines()]   # stdout: the JSONL, nothing else
    assert [d.id for d in docs] == ["notes-1", "notes-2"]
    for noise in ("Warning", "Loading weights", "pre-processing", "Traceback"):
        assert noise not in proc.stderr, proc.stderr
    assert "2 documents" in proc.stderr


def test_progress_bars_go_to_stderr(capsys):
    """``llmner run``'s bar (workers.embedded, default rich console) lands on stderr, not stdout."""
    import rich

    from llmner.cli.main import quiet_libraries
    from workers.embedded import _progress

    previous = rich.get_console()
    try:
        quiet_libraries(verbose=True)
        with _progress(True, 2) as advance:
            advance(2)
        captured = capsys.readouterr()
        assert captured.out == "" and "tagging" in captured.err
    finally:
        rich._console = previous


def test_messages_go_to_stderr_and_stdout_stays_data(tiny_bundle, tmp_path):
    parts = tiny_bundle.parent / f"{tiny_bundle.name}-parts"
    result = CliRunner().invoke(app, ["bundle", "--generator", str(parts / "gen"), "--output", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "MB, generator" in result.stderr
    src = tmp_path / "gold.txt"
    src.write_text(PUBTATOR)
    converted = CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "gold.xml"), "--to", "bioc"])
    assert converted.stdout == "" and "wrote 1 documents with 2 mentions" in converted.stderr


def test_run_on_a_file_without_notes_fails_before_any_worker_starts(tmp_path, monkeypatch):
    import workers.embedded

    def no_workers(*_args, **_kwargs):
        raise AssertionError("workers started for an empty input")

    monkeypatch.setattr(workers.embedded, "running_workers", no_workers)
    monkeypatch.setattr(workers.embedded, "EmbeddedRedis", no_workers)
    notes = tmp_path / "notes.jsonl"
    notes.write_text("\n  \n")
    result = cli("run", notes, "--quiet")
    assert result.exit_code != 0 and "no notes to tag" in str(result.exception)
